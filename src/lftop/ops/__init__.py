"""What lftop does, headless: plan a launch (GPUs chosen once, then the estimate on exactly those), launch,
pause, resume, stop, and the OOM-fix policy. The CLI and the app both call this; they only render its results.

Every refusal is a `Refused` whose message says why and what to do instead.
"""

from lftop.ops import external
from lftop.ops.actions import HoldsCheckpoints, PredictedOOM, Refused, launch, pause, resume, stop, wait_settled
from lftop.ops.fixes import oom_fix
from lftop.ops.plan import Placement, Plan, place, plan

__all__ = ["external", "HoldsCheckpoints", "Placement", "Plan", "PredictedOOM", "Refused", "launch", "oom_fix", "pause", "place", "plan", "resume", "stop",
           "wait_settled"]
