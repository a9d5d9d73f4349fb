"""Every family registers its models on import, in the survey's order."""
from . import resnet  # noqa: F401
