// The figures of the daemon's page-table budget for a log line, apart from reject.h so that the
// layers that know no ioctl (core/iommufd/io_pagetable.cc) can say them too.
#pragma once

#include <string>

namespace vfio_emu::core {

// What to add to the log line of a domain operation (map, window creation) that failed with
// `e`: when it was ENOMEM because the daemon's page-table budget (Limits::table_memory) refused a
// table, " (page tables: ... in use ...)" with the figures in hex; otherwise nothing.
std::string table_limit_note(int e);

}  // namespace vfio_emu::core
