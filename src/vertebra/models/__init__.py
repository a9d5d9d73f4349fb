"""Every family registers its models on import: this imports each module of the package, then
the other libraries' names for them (aliases.py), which need the models registered first."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "aliases":
        importlib.import_module(f"{__name__}.{_module.name}")
importlib.import_module(f"{__name__}.aliases")
