"""AbsRel and δ1 against the number of Euler steps (NFE), like the paper's Table 3, with the mean-depth prior
beside the model when asked: what ``depthfm-eval`` reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from ..pipeline import DepthFMPipeline
from .prior import evaluate_prior, images_beating_prior, mean_log_depth_prior
from .scoring import format_table, score

DESCRIBED = {"log": "least-squares scale and shift in log space",
             "depth": "least-squares scale and shift in depth space (Marigold), clipped to the depth cap"}


def evaluate_pipeline(pipe: DepthFMPipeline, dataset, progress: bool = True, alignments=("log",),
                      protocol: str = "none") -> dict[str, dict[str, float]]:
    """Mean per-image AbsRel and delta1 of the pipeline's z for each alignment ('log': least squares to log ground
    truth; 'depth': Marigold's depth-space fit of the relative output), inside ``protocol``'s crop and depth cap."""
    return score(lambda rgb, gt: pipe(rgb).z_hw, dataset, alignments, protocol,
                 tqdm(total=len(dataset), desc=f"eval nfe={pipe.backend.num_steps}", unit="img", disable=not progress))


@dataclass
class StepsReport:
    """``results[nfe][alignment]`` and ``prior[alignment]`` (None without a prior): :func:`score`'s results."""

    num_images: int
    alignments: list[str]
    protocol: str
    results: dict[int, dict[str, dict]]
    prior: dict[str, dict] | None = None

    def text(self, ensemble_size: int, processing_resolution: int) -> str:
        """One table per alignment, the prior's scores and the images the model beats it on."""
        lines = []
        for alignment in self.alignments:
            lines.append(f"{self.num_images} images, ensemble {ensemble_size}, processing resolution "
                         f"{processing_resolution}, protocol {self.protocol}, {DESCRIBED[alignment]}")
            lines.append(format_table({nfe: r[alignment] for nfe, r in self.results.items()}))
            if self.prior is not None:
                prior = self.prior[alignment]
                lines.append(f"mean-depth prior (ignores the image): AbsRel {100 * prior['abs_rel']:.1f}, "
                             f"δ1 {100 * prior['delta1']:.1f}")
                wins = ", ".join(f"NFE {nfe}: {images_beating_prior(r[alignment], prior)}/{prior['num_images']}"
                                 for nfe, r in self.results.items())
                lines.append(f"images where the model's AbsRel beats the prior's: {wins}")
        return "\n".join(lines)

    def json_payload(self) -> dict:
        """Per NFE (and "prior") the results of the one alignment, or of each alignment by name."""
        def one(v: dict) -> dict:
            return v[self.alignments[0]] if len(self.alignments) == 1 else v

        payload = {str(k): one(v) for k, v in self.results.items()}
        if self.prior is not None:
            payload["prior"] = one(self.prior)
        return payload


def evaluate_num_steps(pipeline_for: Callable[[int], DepthFMPipeline], nfes, dataset, alignments=("log",),
                       protocol: str = "none", prior_dataset=None, progress: bool = True) -> StepsReport:
    """Score ``pipeline_for(nfe)`` on ``dataset`` for every NFE, and the mean-depth prior of ``prior_dataset``
    (a training set) when one is given."""
    alignments = list(alignments)
    results = {nfe: evaluate_pipeline(pipeline_for(nfe), dataset, progress, alignments, protocol) for nfe in nfes}
    prior = None if prior_dataset is None else \
        evaluate_prior(mean_log_depth_prior(prior_dataset), dataset, alignments, protocol)
    return StepsReport(len(dataset), alignments, protocol, results, prior)
