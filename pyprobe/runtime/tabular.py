"""What every live map and buffer offers beyond its own reads: a DataFrame, and
its display in a notebook. Kept apart (and import-free) so maps stay light."""
from __future__ import annotations


class Tabular:
    def to_pandas(self):
        """A pandas DataFrame: key and value fields as columns (needs pandas: pip install pyprobe[pandas]).

        Array: an `index` column; per-CPU maps: a row per CPU (`cpu`); Histogram: a row per
        bucket (`low`, `high`, `count`); RingBuf/PerfBuf: the records waiting now (drained);
        Queue/Stack: the values in pop order (popped).
        """
        from pyprobe.runtime.tables import to_pandas

        return to_pandas(self)

    def _repr_html_(self) -> str:
        from pyprobe.notebook import map_html

        return map_html(self)
