"""What a training run shows while it runs: a progress bar with the last loss, and TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm


class ProgressBar:
    """A tqdm bar of ``total`` steps showing the last loss; nothing at all when ``enabled`` is False."""

    def __init__(self, enabled: bool, total: int, initial: int = 0, desc: str = "train"):
        self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True) if enabled else None

    def update(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ScalarLog:
    """TensorBoard scalars in ``log_dir`` every ``log_every`` steps; nothing when tensorboard is not installed."""

    def __init__(self, log_dir: str | Path, log_every: int):
        self.log_every = log_every
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: progress bar only
            self._writer = None
            return
        self._writer = SummaryWriter(str(log_dir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self._writer is not None and self.log_every and step % self.log_every == 0:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
