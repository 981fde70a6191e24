"""What a training run writes: the trainer state a run resumes from (written atomically), and the trained model
as an official checkpoint and a diffusers folder."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.completion import DepthCompletionFM
from ..models.depthfm import DepthFM
from ..models.ldm import load_torch_file

TRAINER_STATE_FILE = "trainer_state.pt"
OFFICIAL_CKPT_NAME = "depthfm.ckpt"
DIFFUSERS_DIR_NAME = "diffusers"


def rng_states() -> dict[str, Any]:
    """The global torch, numpy and Python RNG states (a resumed run restores them)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def write_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    """``state`` to ``folder/trainer_state.pt`` through a temporary file, so an interrupted write leaves the
    previous state whole."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (TRAINER_STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(folder / TRAINER_STATE_FILE)


def read_trainer_state(folder: str | Path) -> dict[str, Any]:
    """The state :func:`write_trainer_state` wrote to ``folder``; CheckpointError when it is missing or unreadable."""
    path = Path(folder) / TRAINER_STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no trainer checkpoint at {path}")
    try:
        return load_torch_file(path, "trainer state")
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read trainer checkpoint {path}: {exc}") from exc


def export_model(model: DepthFM, folder: str | Path) -> dict[str, Path]:
    """Write ``folder/depthfm.ckpt`` (official format, LDM names) and ``folder/diffusers`` (save_pretrained). A
    depth-completion model gets the diffusers folder only: its 13-channel UNet is no official DepthFM, and neither
    the official code nor ``DepthFM.load`` could read such a .ckpt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if not isinstance(model, DepthCompletionFM):
        paths["official"] = folder / OFFICIAL_CKPT_NAME
        torch.save(model.to_official_checkpoint(), paths["official"])
    paths["diffusers"] = model.save_pretrained(folder / DIFFUSERS_DIR_NAME)
    return paths
