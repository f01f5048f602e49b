from pyray.data.datasource.datasink import Datasink, WriteResult
from pyray.data.datasource.datasource import Datasource, ReadTask
from pyray.data.datasource.file_based_datasource import FileBasedDatasource
from pyray.data.datasource.file_datasink import BlockBasedFileDatasink, FilenameProvider
from pyray.data.datasource.partitioning import (Partitioning, PathPartitionFilter,
                                                PathPartitionParser)

__all__ = ["Datasource", "ReadTask", "Datasink", "WriteResult", "FileBasedDatasource",
           "BlockBasedFileDatasink", "FilenameProvider", "Partitioning",
           "PathPartitionFilter", "PathPartitionParser"]
