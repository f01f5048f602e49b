from pyray.data.datasource.datasink import Datasink, WriteResult
from pyray.data.datasource.datasource import Datasource, ReadTask

__all__ = ["Datasource", "ReadTask", "Datasink", "WriteResult"]
