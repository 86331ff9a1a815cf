"""Jurisdiction presets: they narrow a batch's settings and person policy, never widen them.

The table of what each preset imposes, with the rules it cites (Chile's Ley 19.496 art. 37 as amended
by Ley 21.320; the US CFPB Regulation F), is plain data in ``policy_types``; applying it to a batch's
settings is ``settings.apply_preset``. This module is their public face: import presets from here.
"""

from __future__ import annotations

from speechai.domain.policy_types import PRESET_RULES, Preset, PresetRules, preset_person_policy, rules_of
from speechai.domain.settings import apply_preset

__all__ = ["PRESET_RULES", "Preset", "PresetRules", "apply_preset", "preset_person_policy", "rules_of"]
