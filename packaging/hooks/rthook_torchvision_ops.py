"""PyInstaller runtime hook: let `import torchvision` succeed without torchvision's compiled ops.

The bundle leaves out ``torchvision._C`` (detection ops such as NMS; PyPI's Linux build links the
CUDA libraries). The viewer only needs ``torchvision.models``, but ``torchvision/_meta_registrations``
registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally, which fails
when the operators were never declared. This hook declares the two schemas (no kernels: calling
them still raises torchvision's own "Couldn't load custom C++ ops" error) just before that module
is imported, and only when the compiled ops are absent. Nothing is imported at start-up.
"""

from __future__ import annotations

import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_TARGET = "torchvision._meta_registrations"


class _DeclareTorchvisionOps:
    """Meta-path finder that never finds anything; it acts once, when `_TARGET` is looked up."""

    library = None  # keeps the torch.library.Library (and so the declared schemas) alive

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 (importlib protocol)
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        import torch
        import torchvision.extension

        if not torchvision.extension._has_ops():
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for op, schema in _SCHEMAS.items():
                if not hasattr(torch.ops.torchvision, op):
                    lib.define(schema)
            _DeclareTorchvisionOps.library = lib
        return None


sys.meta_path.insert(0, _DeclareTorchvisionOps())
