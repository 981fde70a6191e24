"""diffusers model folders, loaded whole or refused: diffusers fills a tensor its weights file lacks with random
values and only logs a warning, which would run a half-random model with nothing said."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError


def load_pretrained(model_class, folder: str | Path, what: str):
    """``model_class.from_pretrained(folder)`` (local safetensors only), or CheckpointError naming the weights file
    and the tensors it lacks, has in excess or holds in another shape."""
    folder = Path(folder)
    try:
        model, info = model_class.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                  output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load {what} from {folder}: {exc}") from exc
    problems = []
    for key, text in (("missing_keys", "missing"), ("unexpected_keys", "not in the model"),
                      ("mismatched_keys", "of another shape")):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(key) or ())
        if names:
            problems.append(f"{len(names)} tensor{'s' if len(names) > 1 else ''} {text} (e.g. {', '.join(names[:3])})")
    if problems:
        weights = sorted(folder.glob("*.safetensors")) or [folder]
        raise CheckpointError(f"{what} weights {weights[0]} do not fit its config.json: {'; '.join(problems)}")
    return model
