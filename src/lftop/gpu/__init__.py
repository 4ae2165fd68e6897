"""GPU and host telemetry: NVML (real or simulated), psutil, process ownership, history."""
