"""The DepthFM a user's :class:`~depthfm_ros.settings.ModelSettings` describe."""

from __future__ import annotations

from ..errors import CheckpointError
from ..settings import NO_MODEL_HINT, ModelSettings
from .architectures import build_tiny_depthfm
from .depthfm import DepthFM
from .tiny_vae import TINY_TEST_CONFIG, build_tiny_vae, load_tiny_vae


def load_model(settings: ModelSettings) -> DepthFM:
    """The small random model (``tiny_model``, for demos and tests; with ``vae_kind`` 'tiny' a random test-size tiny
    VAE unless ``tiny_vae`` names a folder) or the checkpoint's model; CheckpointError when neither is given."""
    if settings.tiny_model:
        model = build_tiny_depthfm(seed=settings.model_seed)
        if settings.vae_kind == "tiny":
            model.set_tiny_vae(load_tiny_vae(settings.tiny_vae) if settings.tiny_vae
                               else build_tiny_vae(TINY_TEST_CONFIG))
        return model.set_rescale_attention(settings.rescale_attention)
    if not settings.checkpoint:
        raise CheckpointError(f"no model given: {NO_MODEL_HINT}")
    model = DepthFM.load(settings.checkpoint, settings.vae, tiny_vae=settings.tiny_vae, vae_kind=settings.vae_kind)
    return model.set_rescale_attention(settings.rescale_attention)
