"""Shared fixtures; also checks that `make test` really tests the installed wheel."""

import os
import sysconfig

import victor_observability

if os.environ.get("VICTOR_REQUIRE_INSTALLED"):
    site = sysconfig.get_paths()["purelib"]
    assert victor_observability.__file__.startswith(site), (
        f"testing {victor_observability.__file__}, not the wheel installed in {site}"
    )
