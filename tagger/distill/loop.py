"""The resumable training loop that chord and key training share.

:func:`run_loop` drives any model: the caller supplies one optimisation step
and one held-out evaluation; the loop adds the time limit, the best-weights
selection with early stopping, and checkpoints. A checkpoint (model,
optimizer, step, the sampler's and torch's RNG states, best weights,
history) is written atomically every ``checkpoint_every`` steps, at the end
and on Ctrl-C; running the same training again resumes from it and
continues exactly as if never interrupted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from model_zoo.fileio import atomic_write


class TrainError(Exception):
    pass


@dataclass
class LoopResult:
    steps: int
    best_step: int
    best_score: float                 # higher is better (as ``evaluate`` returned it)
    history: list = field(default_factory=list)
    seconds: float = 0.0
    steps_per_second: float = 0.0
    resumed_from: int = 0


def warmup_cosine(step: int, cfg, floor: float) -> float:
    """Learning rate at ``step``: linear warm-up over ``cfg.warmup`` steps to
    ``cfg.lr``, then a cosine decay to ``floor * cfg.lr`` at ``cfg.max_steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    prog = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * prog)))


def load_training_state(path: Path, cfg, trajectory, version: int, net, opt, sampler,
                        device: torch.device) -> dict:
    """Restore a training checkpoint into ``net``, ``opt``, ``sampler`` and the RNGs.

    Refuses a checkpoint whose trajectory settings or format differ; returns
    the whole checkpoint dict (its progress fields: step, best_*, history...).
    """
    ck = torch.load(path, map_location="cpu", weights_only=True)
    old = ck.get("config", {})
    diff = [k for k in trajectory if old.get(k) != getattr(cfg, k)]
    if ck.get("version") != version or diff:
        raise TrainError(f"{path}: checkpoint made with other settings "
                         f"({', '.join(diff) or 'version'}); pass --restart to start over")
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sampler.set_state(ck["rng_sampler"])
    torch.set_rng_state(ck["rng_torch"])
    if device.type == "cuda" and ck.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all(ck["rng_cuda"])
    return ck


def save_training_state(path: Path, cfg, version: int, net, opt, sampler,
                        device: torch.device, **progress) -> None:
    """Atomically write a checkpoint: model, optimizer, RNG states and ``progress``."""
    state = {"version": version, "config": asdict(cfg),
             "model": net.state_dict(), "optimizer": opt.state_dict(),
             "rng_sampler": sampler.state(), "rng_torch": torch.get_rng_state(),
             "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
             **progress}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


@dataclass
class _Progress:
    """Where a run stands: what a checkpoint stores besides weights and RNGs
    (the fields are the checkpoint's keys)."""
    step: int = 0
    best_metric: float = -float("inf")
    best_step: int = 0
    bad: int = 0
    elapsed: float = 0.0
    best_model: dict | None = None
    history: list = field(default_factory=list)
    done: bool = False

    @classmethod
    def from_checkpoint(cls, ck: dict) -> _Progress:
        return cls(**{f.name: ck[f.name] for f in fields(cls)})

    def checkpoint_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def record(self, net: torch.nn.Module, score: float, record: dict, run_dir: Path,
               min_delta: float) -> None:
        """Log one held-out evaluation and keep the weights if they are the best."""
        self.history.append({"step": self.step, **record})
        with open(run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(self.history[-1]) + "\n")
        if score > self.best_metric + min_delta or self.best_model is None:
            self.best_metric, self.best_step, self.bad = score, self.step, 0
            self.best_model = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            self.bad += 1


def run_loop(*, net: torch.nn.Module, opt, sampler, cfg, trajectory, version: int,
             run_dir: Path, device: torch.device,
             train_step: Callable[[int], dict],
             evaluate: Callable[[], tuple[float, dict]] | None,
             desc: str, progress: bool = True, stop_after: int | None = None,
             min_delta: float = 1e-4, log=print) -> LoopResult:
    """Train ``net`` to ``cfg.max_steps`` (or ``cfg.max_minutes``), resuming if a
    checkpoint exists in ``run_dir``.

    ``train_step(step)`` makes one optimisation step and returns its loss parts
    (with ``"loss"``). ``evaluate()`` (None: no held-out data) scores the
    held-out tracks: ``(score, record)``, higher score is better, ``record`` goes
    to the history and ``run_dir/log.jsonl``. The best-scoring weights (an
    improvement must exceed ``min_delta``) are loaded into ``net`` at the end;
    ``cfg.patience`` evaluations without improvement stop training early.
    ``stop_after``: stop (checkpointed, not finished) once this many steps are
    done, as an interruption would; a later call resumes.
    """
    from .trainbar import TrainBar
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "ckpt.pt"
    pr = _Progress()
    if ckpt_path.exists():
        pr = _Progress.from_checkpoint(load_training_state(
            ckpt_path, cfg, trajectory, version, net, opt, sampler, device))
        if not pr.done:
            log(f"resuming from step {pr.step} ({ckpt_path})")
    resumed_from = pr.step

    def checkpoint() -> None:
        save_training_state(ckpt_path, cfg, version, net, opt, sampler, device,
                            **pr.checkpoint_fields())

    def held_out() -> bool:
        """Score the held-out tracks; True when training should stop."""
        net.eval()
        score, record = evaluate()
        net.train()
        pr.record(net, score, record, run_dir, min_delta)
        return pr.bad >= cfg.patience

    t_start = time.monotonic() - pr.elapsed
    session_start, session_steps = time.monotonic(), 0
    bar = TrainBar(cfg.max_steps, cfg.max_minutes, desc, start_step=pr.step,
                   enabled=progress and not pr.done)
    try:
        while not pr.done and pr.step < cfg.max_steps:
            if stop_after is not None and pr.step >= stop_after:
                checkpoint()
                bar.close()
                return LoopResult(pr.step, pr.best_step, pr.best_metric, pr.history,
                                  time.monotonic() - t_start, 0.0, resumed_from)
            if cfg.max_minutes and (time.monotonic() - t_start) / 60 >= cfg.max_minutes:
                log(f"time limit reached at step {pr.step}")
                break
            parts = train_step(pr.step)
            pr.step += 1
            session_steps += 1
            pr.elapsed = time.monotonic() - t_start
            best = (f" | best held-out {abs(pr.best_metric):.3f}"
                    if pr.best_model is not None else "")
            bar.advance(pr.step, pr.elapsed,
                        None if pr.step % 10 else f"loss {parts['loss'].item():.3f}{best}")
            stop = evaluate is not None and pr.step % cfg.eval_every == 0 and held_out()
            if pr.step % cfg.checkpoint_every == 0 or stop:
                checkpoint()
            if stop:
                log(f"early stop at step {pr.step}: no held-out improvement in "
                    f"{cfg.patience} evaluations (best at step {pr.best_step})")
                break
        if not pr.done:
            if evaluate is not None and (not pr.history or pr.history[-1]["step"] != pr.step):
                held_out()
            pr.done = True
            pr.elapsed = time.monotonic() - t_start
            checkpoint()
    except KeyboardInterrupt:
        pr.elapsed = time.monotonic() - t_start
        checkpoint()
        bar.close()
        log(f"interrupted at step {pr.step}; checkpoint saved to {ckpt_path} "
            "(run the same command again to resume)")
        raise
    bar.close()
    if pr.best_model is not None:
        net.load_state_dict(pr.best_model)
    net.eval()
    sess = time.monotonic() - session_start
    return LoopResult(pr.step, pr.best_step, pr.best_metric, pr.history, pr.elapsed,
                      session_steps / sess if session_steps and sess > 0 else 0.0,
                      resumed_from)


__all__ = ["LoopResult", "TrainError", "load_training_state", "run_loop",
           "save_training_state", "warmup_cosine"]
