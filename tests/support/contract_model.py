"""The contract model for tests: it lives in the core (`kfloop.contract_model`), since `kfloop demo` builds its
deliberately bad version with it and product code does not import tests/."""

from kfloop.contract_model import (
    POSITION_BIAS,
    SERVING_POSITION,
    STRONG_FEATURE,
    ContractSpec,
    build,
    raw_inputs,
    register,
)

__all__ = ["POSITION_BIAS", "SERVING_POSITION", "STRONG_FEATURE", "ContractSpec", "build", "raw_inputs", "register"]
