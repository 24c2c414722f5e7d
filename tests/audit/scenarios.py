"""The registry of audit coverage scenarios (tests/audit/test_coverage.py).

A scenario performs, through the application, the act its action names, in
`clinic` (the alpha clinic of tests/conftest.py); the coverage test asserts
that exactly one event of that action was written. Areas keep their
scenarios in their own modules (scenarios_identity, scenarios_team,
scenarios_breakglass), which test_coverage imports.
"""

from __future__ import annotations

from collections.abc import Callable

Scenario = Callable[..., None]
SCENARIOS: dict[str, Scenario] = {}

# Actions whose scenario belongs to another area and is not written yet.
NO_SCENARIO_YET: dict[str, str] = {}


def scenario(action: str) -> Callable[[Scenario], Scenario]:
    def register(func: Scenario) -> Scenario:
        if action in SCENARIOS:
            raise ValueError(f"two coverage scenarios for {action!r}")
        SCENARIOS[action] = func
        return func

    return register
