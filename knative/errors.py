"""Errors of the `knative` package: each names the pipeline, node, function or resource at fault."""

from __future__ import annotations

from broker.errors import KnflowError


class KnativeError(KnflowError):
    """Root of what `knflow manifests`, `deploy` and `status` raise on purpose."""


class ProfileInvalid(KnativeError):
    """The cluster profile file cannot be read or has wrong keys or values."""


class ScalingInvalid(KnativeError):
    """A node's `scaling` mapping has an unknown key or a value Knative would reject."""


class NodesDisagree(KnativeError):
    """Two nodes that share one function (one Knative Service) ask for different settings."""


class LoopRisk(KnativeError):
    """Pipelines that start each other through `dev.knflow.run.*` events would never stop."""


class ManifestsRejected(KnativeError):
    """Generated manifests that Knative's admission webhooks would reject (`problems` lists why)."""

    def __init__(self, problems: list) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"the generated manifests would be rejected by Knative ({count}):\n" + "\n".join(f"  {p}" for p in problems)
        )


class ClusterError(KnativeError):
    """The Kubernetes API server could not be reached, or refused a request."""


class DeploymentInvalid(KnativeError):
    """A function's deployment settings (image, volumes, GPU pool, ...) do not fit the cluster profile."""
