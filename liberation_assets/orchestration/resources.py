"""The one Dagster resource: it only loads the spec (with the deployment's overrides) and says where replicas live.

Environment variables are read lazily, when a run needs a connection, never at
import time, so the code location loads even where secrets are absent.
"""

import os

import dagster as dg
from pydantic import PrivateAttr

from liberation_assets.core.spec import Spec, default_spec_path, load_spec


class LiberationResource(dg.ConfigurableResource["LiberationResource"]):
    """Everything an asset needs: the spec (an empty bootstrap keeps the spec's own Kafka) and the replica URL."""

    spec_path: str = ""
    """The spec file; empty: ``$LIBERATION_SPEC`` or ``liberation.yaml``."""
    bootstrap_servers: str = ""
    """Kafka bootstrap servers overriding the spec's, for a deployment that moves the cluster."""
    replica_url: str = ""
    """Where replicas live: a SQLAlchemy URL (``{stream}``/``{topic}`` allowed); empty means
    ``$LIBERATION_REPLICA_URL`` or a SQLite file per stream under ``.stack/replicas``."""

    _spec: Spec | None = PrivateAttr(default=None)

    def load_spec(self) -> Spec:
        if self._spec is None:
            spec = load_spec(self.spec_path or default_spec_path())
            if self.bootstrap_servers:
                kafka = spec.kafka.model_copy(update={"bootstrap_servers": self.bootstrap_servers})
                spec = spec.model_copy(update={"kafka": kafka})
            self._spec = spec
        return self._spec


def build_resources(spec_path: str | None = None) -> dict[str, object]:
    return {"liberation": LiberationResource(spec_path=str(spec_path or os.environ.get("LIBERATION_SPEC", "")))}
