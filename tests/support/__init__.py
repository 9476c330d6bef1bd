"""Shared helpers of the tests: tiny models (:mod:`support.models`), small trees
(:mod:`support.trees`), campaign plans (:mod:`support.campaign`) and fake hardware
(:mod:`support.fakes`). Test files import these, never each other."""
