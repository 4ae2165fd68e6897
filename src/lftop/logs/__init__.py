"""Training logs: a follower for growing files and parsers into typed records.

Modules: follower (read a growing file in blocks of whole lines; a finished one into one reused buffer),
tail (the last bytes of a file), text (bytes to text; the optional C scanner), parse (training.log ->
records), jsonl (trainer_log.jsonl -> records), failures (how a run failed), points (a run's points
by step, as columns), history (one History per run), scan (`lftop scan`).

Metrics, by name. Every numeric value of a transformers metric dict is kept under the name the log
gives it: `loss`, `learning_rate` (Point.lr), `grad_norm` and `epoch` on the Point, every other one in
Point.metrics: DPO/ORPO/SimPO's `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`,
`rewards/margins`, `logps/chosen`, `logps/rejected`, `logits/chosen`, `logits/rejected`; ORPO's `sft_loss`
and `odds_ratio_loss`; KTO's `kl`; PPO's `reward`; `num_input_tokens_seen`, ... An evaluation dict's
`eval_loss` is Eval.eval_loss, its other values (`eval_rewards/accuracies`, reward modelling's
`eval_accuracy`, `eval_runtime`, ...) are in Eval.metrics. History.metric_names() lists what a run has
and History.series(name) gives any of them by step. `lftop scan --json` prints each point as
{"step", "loss", "lr", "grad_norm", "epoch", <every other metric by name>}, each evaluation as
{"step", "eval_loss", <its other metrics>}, and "metrics" (the names), "diverged_at", "progress",
"errors", "facts".

nan and inf. Values are kept as the log printed them; History.diverged_at is the first step whose loss
or grad norm is nan or infinite (None while all are finite). JSON output writes them as the strings
"nan", "inf" and "-inf" (lftop.console.dumps), never as the NaN token json.dumps would write.
"""
