"""Device profiles: one YAML file per device model, checked against a schema and each other.

A profile says who makes the device, how to recognise it (BLE advertisement or MQTT topic),
the BLE session the gateway runs with it, which standard decoder each characteristic uses
(with quirk switches for devices that bend the specification), how vendor JSON maps onto
readings (JMESPath), and samples proving all of it. The packaged profiles live in
``device-profiles/``; a site adds its own in drop-in directories (``WARDWATCH_PROFILE_DIRS``).

Public API: :class:`ProfileRegistry`, :class:`Profile`, :class:`Advertisement`,
:class:`ProfileError` / :class:`ProfileProblem`, :func:`check`, :func:`run_samples`,
:func:`devices_markdown`, :func:`packaged_profile_dir`, :data:`PROFILE_DIRS_ENV`.
"""

from __future__ import annotations

from gateway.profiles._docs import devices_markdown
from gateway.profiles._model import Advertisement, Profile
from gateway.profiles._registry import (
    PROFILE_DIRS_ENV,
    ProfileError,
    ProfileProblem,
    ProfileRegistry,
    check,
    packaged_profile_dir,
    profile_dirs_from_env,
)
from gateway.profiles._samples import SampleResult, run_samples

__all__ = [
    "PROFILE_DIRS_ENV",
    "Advertisement",
    "Profile",
    "ProfileError",
    "ProfileProblem",
    "ProfileRegistry",
    "SampleResult",
    "check",
    "devices_markdown",
    "packaged_profile_dir",
    "profile_dirs_from_env",
    "run_samples",
]
