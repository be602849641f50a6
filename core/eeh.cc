#include "core/eeh.h"

#include "core/reject.h"

namespace vfio_emu::core {

using namespace uapi;

u32 EehPeState::vfio_state() const {
  // PowerNV reports a PE under a VFIO-requested reset as frozen (eeh_pe_reset freezes it first),
  // never as VFIO_EEH_PE_STATE_RESET, which only a PHB-wide reset shows.
  if (!mmio_frozen && !dma_frozen) return VFIO_EEH_PE_STATE_NORMAL;
  if (mmio_frozen && dma_frozen) return VFIO_EEH_PE_STATE_STOPPED;
  if (dma_frozen) return VFIO_EEH_PE_STATE_STOPPED_DMA;
  return VFIO_EEH_PE_STATE_UNAVAIL;  // DMA running with MMIO stopped
}

Status check_injected_error(const IoctlCall& call, const vfio_eeh_pe_err& err) {
  const int func = static_cast<int>(err.func);  // eeh_pe_inject_err takes an int
  if (func < static_cast<int>(EEH_ERR_FUNC_MIN) || func > static_cast<int>(EEH_ERR_FUNC_MAX))
    return reject(call, EINVAL, "INJECT_ERR: func {} is not {}..{}", func, EEH_ERR_FUNC_MIN,
                  EEH_ERR_FUNC_MAX);
  if (err.type != EEH_ERR_TYPE_32 && err.type != EEH_ERR_TYPE_64)  // pnv_eeh_err_inject
    return reject(call, ERANGE, "INJECT_ERR: type {} is neither 32- nor 64-bit", err.type);
  return {};
}

void EehPes::add(const Group& g) { pes_[&g] = EehPeState{}; }

void EehPes::remove(const Group& g) { pes_.erase(&g); }

EehPeState EehPes::state(const Group& g) const {
  auto it = pes_.find(&g);
  return it == pes_.end() ? EehPeState{} : it->second;
}

long EehPes::apply(const Group& g, u32 op) {
  EehPeState& pe = pes_[&g];
  switch (op) {
    case VFIO_EEH_PE_DISABLE:  // eeh_pe_set_option(EEH_OPT_DISABLE) does nothing
      pe.enabled = false;
      break;
    case VFIO_EEH_PE_ENABLE:  // eeh_pe_change_owner: a frozen PE is thawed
      pe.enabled = true;
      pe.mmio_frozen = pe.dma_frozen = false;
      break;
    case VFIO_EEH_PE_UNFREEZE_IO:
      pe.mmio_frozen = false;
      break;
    case VFIO_EEH_PE_UNFREEZE_DMA:
      pe.dma_frozen = false;
      break;
    case VFIO_EEH_PE_GET_STATE:
      return pe.vfio_state();
    case VFIO_EEH_PE_RESET_DEACTIVATE:  // reset released, devices re-enabled, PE thawed
      pe.in_reset = false;
      pe.mmio_frozen = pe.dma_frozen = false;
      break;
    case VFIO_EEH_PE_RESET_HOT:
    case VFIO_EEH_PE_RESET_FUNDAMENTAL:  // the PE is frozen first, then held in reset
      pe.mmio_frozen = pe.dma_frozen = true;
      pe.in_reset = true;
      break;
    case VFIO_EEH_PE_CONFIGURE:  // pnv_eeh_configure_bridge: nothing to do
      break;
    case VFIO_EEH_PE_INJECT_ERR:  // the error freezes the PE
      pe.mmio_frozen = pe.dma_frozen = true;
      break;
  }
  return 0;
}

}  // namespace vfio_emu::core
