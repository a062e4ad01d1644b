"""Dagster resources: they only load the spec and build core objects.

Environment variables are read lazily, when a run needs a connection, never at
import time, so the code location loads even where secrets are absent.
"""


import os
from functools import cached_property

import dagster as dg
from pydantic import PrivateAttr

from liberation_assets.core.spec import Spec, default_spec_path, load_spec


class SpecResource(dg.ConfigurableResource):
    """The declarative spec that every asset is built from."""

    path: str = ""

    _spec: Spec | None = PrivateAttr(default=None)

    def load(self) -> Spec:
        if self._spec is None:
            self._spec = load_spec(self.path or default_spec_path())
        return self._spec


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster; an empty bootstrap means the spec's own setting."""

    bootstrap_servers: str = ""

    def apply(self, spec: Spec) -> Spec:
        if not self.bootstrap_servers:
            return spec
        kafka = spec.kafka.model_copy(update={"bootstrap_servers": self.bootstrap_servers})
        return spec.model_copy(update={"kafka": kafka})


class DatabasesResource(dg.ConfigurableResource):
    """Source databases, as the spec names them; secrets resolve from the environment at run time."""

    def url_for(self, spec: Spec, source: str) -> str:
        return spec.sources[source].safe_url()


class LiberationResource(dg.ConfigurableResource):
    """Everything an asset needs: the spec with Kafka applied."""

    spec: SpecResource
    kafka: KafkaResource
    databases: DatabasesResource

    def load_spec(self) -> Spec:
        return self.kafka.apply(self.spec.load())


def build_resources(spec_path: str | None = None) -> dict[str, object]:
    spec_resource = SpecResource(path=str(spec_path or os.environ.get("LIBERATION_SPEC", "")))
    kafka = KafkaResource()
    databases = DatabasesResource()
    return {
        "liberation": LiberationResource(spec=spec_resource, kafka=kafka, databases=databases),
    }
