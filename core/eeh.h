// The EEH partitionable endpoints (PEs) of a sPAPR container's groups, as PowerNV firmware keeps
// them (arch/powerpc/kernel/eeh.c, platforms/powernv), and what each VFIO_EEH_PE_OP does to
// them. The ioctl itself (reading its argument, the order over the groups) is the sPAPR
// driver's, in core/spapr.cc; the state lives in its driver, under the container's mu.
#pragma once

#include <map>

#include "core/context.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

class Group;

// The EEH state of one partitionable endpoint.
struct EehPeState {
  bool mmio_frozen = false;  // loads/stores to the PE's MMIO and config space are stopped
  bool dma_frozen = false;   // the PE's DMA is stopped
  bool in_reset = false;     // a hot or fundamental reset is asserted (config access blocked)
  bool enabled = false;      // VFIO_EEH_PE_ENABLE was the last of ENABLE/DISABLE
  bool normal() const { return !mmio_frozen && !dma_frozen && !in_reset; }
  // VFIO_EEH_PE_STATE_* as eeh_pe_get_state() derives it from the freeze state.
  u32 vfio_state() const;
};

// The error VFIO_EEH_PE_INJECT_ERR asks for, checked as eeh_pe_inject_err and pnv_eeh_err_inject
// do: EINVAL for a function outside EEH_ERR_FUNC_MIN..MAX, then ERANGE for a type neither
// EEH_ERR_TYPE_32 nor EEH_ERR_TYPE_64.
Status check_injected_error(const IoctlCall& call, const uapi::vfio_eeh_pe_err& err);

// One PE per group of the container (PowerNV: a group is a PE).
class EehPes {
 public:
  // A group joins: its PE starts normal and not enabled.
  void add(const Group& g);
  // A group leaves: releasing the PE (eeh_dev_release -> eeh_pe_change_owner) recovers it.
  void remove(const Group& g);

  EehPeState state(const Group& g) const;
  // MMIO or DMA stopped, or held in reset: the group's devices are in a bad state.
  bool frozen(const Group& g) const { return !state(g).normal(); }

  // VFIO_EEH_PE_OP `op` (a VFIO_EEH_PE_* up to INJECT_ERR, whose error was checked) on the PE of
  // `g`. Returns GET_STATE's VFIO_EEH_PE_STATE_*, 0 for the other ops.
  long apply(const Group& g, u32 op);

 private:
  std::map<const Group*, EehPeState> pes_;
};

}  // namespace vfio_emu::core
