"""The run's configuration and the versions of the software it used."""

from __future__ import annotations

import json

from paramdelta.report.tables import plain_table

ID = "config"
HEADING = "Configuration and versions"
CAPTION = "The configuration of this run and the versions of the software it used, for reproducing it."
PER_DATASET = False


def context(data) -> dict:
    return {
        "config": json.dumps(data.meta.get("config", {}), indent=2, default=str),
        "versions": plain_table(["package", "version"], sorted(data.meta.get("versions", {}).items())),
    }
