"""Each model version's reference CTR: its online CTR over its reference window, the first `size` impressions
it served as `stable` (so, after its promotion: impressions it served as a canary do not count). Pure, driven
by the joiner's arrival clock.

An impression is admitted to its version's window while the window has room; a click the joiner attributes to
an admitted impression (within the attribution window, not a duplicate) counts for it. Once the window is full,
its clicks are awaited `settle` longer (after the arrival of its last impression); then the reference is fixed
as clicks / size and no longer changes. A click later than that is left out, so the reference can be slightly
low: the decay alert that compares with it errs toward silence.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE = "stable"


@dataclass
class _Window:
    impressions: int = 0
    clicks: int = 0
    full_at_us: int | None = None


class ReferenceWindows:
    """The reference windows being filled, and the references fixed, per model version."""

    def __init__(self, *, size: int, settle_us: int) -> None:
        if size < 1 or settle_us < 0:
            raise ValueError("size must be at least 1 and settle_us at least 0")
        self.size = size
        self.settle_us = settle_us
        self.ctr: dict[str, float] = {}
        """Fixed references: the CTR of each version whose window is complete."""
        self._filling: dict[str, _Window] = {}

    def admit(self, model_version: str, variant: str, now_us: int) -> bool:
        """An impression arrived (at `now_us`): whether it is in its version's reference window."""
        if variant != STABLE or model_version in self.ctr:
            return False
        window = self._filling.setdefault(model_version, _Window())
        if window.impressions >= self.size:
            return False
        window.impressions += 1
        if window.impressions == self.size:
            window.full_at_us = now_us
        return True

    def click(self, model_version: str) -> None:
        """A click attributed to an impression `admit` took."""
        window = self._filling.get(model_version)
        if window is not None:
            window.clicks += 1

    def advance(self, now_us: int) -> None:
        """Fix the references of the windows that are full and have waited `settle` for their clicks."""
        for version, window in list(self._filling.items()):
            if window.full_at_us is not None and now_us >= window.full_at_us + self.settle_us:
                self.ctr[version] = window.clicks / window.impressions
                del self._filling[version]
