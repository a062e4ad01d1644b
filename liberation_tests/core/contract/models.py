"""A contract referenced as a Python object (``contract: "liberation_tests.core.contract.models:Item"``)."""

import pandera.pandas as pa
from pandera.typing import Series


class Item(pa.DataFrameModel):
    """The items contract as a pandera model: the same rules the spec-declared contract states."""

    sku: Series[str] = pa.Field(nullable=False)
    qty: Series[int] = pa.Field(nullable=True)
    price: Series[float] = pa.Field(ge=0, nullable=False, metadata={"type": "decimal"})
    status: Series[str] = pa.Field(isin=["new", "paid", "shipped"], nullable=True)

    class Config:
        strict = False
