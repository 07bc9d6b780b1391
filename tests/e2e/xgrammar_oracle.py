"""XGrammar without PyTorch: its matcher takes NumPy bitmasks through DLPack, but the package imports torch (and
triton) at load time for its tensor helpers, which the oracle never calls. Stand-ins for those modules let it
load; transformers is imported first so that it settles on "no torch" before the stand-in exists."""
import sys
import types

import transformers  # noqa: F401  (must come before the stand-in, see above)


class _Anything:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


def _stand_in(name):
    module = types.ModuleType(name)
    module.__path__ = []
    module.Tensor = type("Tensor", (), {})
    module.device = type("device", (), {})
    module.dtype = type("dtype", (), {})
    module.__getattr__ = lambda attr: _Anything()
    return module


def load():
    """The xgrammar module, or None when it is not installed."""
    try:
        import importlib.util
        if importlib.util.find_spec("xgrammar") is None:
            return None
    except ValueError:
        pass
    for name in ("torch", "torch.version", "torch.utils", "torch.utils.cpp_extension", "triton", "triton.language"):
        sys.modules.setdefault(name, _stand_in(name))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import xgrammar
    return xgrammar
