"""Many environments, one model (LEADS, Yin et al. 2021; CoDA, Kirchmeyer et al. 2022).

``dy/dt = F_p(y; θ, θ_e) + f(y) + g_e(y)``: a shared prior and network, and a small part per
environment, trained over environment-major batches; a new environment is fitted with the
shared part frozen (``EnvironmentModule(adapt_from=...)``).
"""

from hybrid.environments.module import EnvironmentModule
from hybrid.environments.networks import (
    CircularConvNet,
    EnvironmentCorrection,
    Hyper,
    Independent,
)
from hybrid.environments.objectives import (
    Coda,
    EnvironmentFit,
    Leads,
    OneForAll,
    OnePerEnvironment,
)
from hybrid.environments.parameters import PerEnvironment

__all__ = [
    "CircularConvNet",
    "Coda",
    "EnvironmentCorrection",
    "EnvironmentFit",
    "EnvironmentModule",
    "Hyper",
    "Independent",
    "Leads",
    "OneForAll",
    "OnePerEnvironment",
    "PerEnvironment",
]
