"""e3nn's ``o3.experimental`` products (e3nn 0.6.0): :class:`FullTensorProductv2` and
:class:`ElementwiseTensorProductv2`, on fastso3's tensor-product plans (see ``_tensor_products``)."""

from ._tensor_products import ElementwiseTensorProductv2, FullTensorProductv2

__all__ = ["ElementwiseTensorProductv2", "FullTensorProductv2"]
