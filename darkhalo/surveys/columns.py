"""The sweep catalog darkhalo reads and the mock writes, as names and dtype names derived from its
contract (data_contracts.catalog.Catalog, which holds the units), and the conventions it keys on."""

from __future__ import annotations

from data_contracts.catalog import Catalog
from data_contracts.schema import column_dtypes
from data_contracts.survey import BANDS, KEY

__all__ = ["BANDS", "KEY", "OPTICAL_WISE", "SWEEP_COLUMNS", "TYPES"]

TYPES = ("PSF", "REX", "DEV", "EXP", "SER", "DUP")
#: The bands with fluxes, inverse variances and transmissions: grz and WISE W1, W2.
OPTICAL_WISE = ("G", "R", "Z", "W1", "W2")
#: Column name -> numpy dtype name (``str`` for strings), in the catalog's order.
SWEEP_COLUMNS: dict[str, str] = column_dtypes(Catalog)
