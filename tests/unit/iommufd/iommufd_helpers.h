// Small C-like wrappers over the iommufd and cdev ioctls for the iommufd tests: each returns the
// errno of the call (0 on success), as a C program would see it.
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "core/device.h"
#include "core/emulator.h"
#include "core/iommufd/iommufd.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "tests/unit/core_harness.h"

namespace vfio_emu::test {

using namespace vfio_emu::uapi;
using core::u16;
using core::u8;

constexpr u64 K4 = 4096;
constexpr u64 M2 = u64{2} << 20;
constexpr u64 kMax = ~u64{0};
constexpr u32 kRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
constexpr u32 kFixed = IOMMU_IOAS_MAP_FIXED_IOVA;

inline u32 ioas_alloc(Harness& h, int fd) {
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0);
  return a.out_ioas_id;
}

// IOMMU_IOAS_MAP; *iova is in (with FIXED_IOVA) and out.
inline int ioas_map(Harness& h, int fd, u32 ioas, u64 user_va, u64 length, u64* iova,
                    u32 flags = kRW | kFixed) {
  iommu_ioas_map m{};
  m.size = sizeof(m);
  m.flags = flags;
  m.ioas_id = ioas;
  m.user_va = user_va;
  m.length = length;
  m.iova = *iova;
  const int e = h.fails(fd, IOMMU_IOAS_MAP, &m);
  if (e == 0) *iova = m.iova;
  return e;
}

inline int ioas_map_at(Harness& h, int fd, u32 ioas, u64 user_va, u64 length, u64 iova,
                       u32 flags = kRW | kFixed) {
  return ioas_map(h, fd, ioas, user_va, length, &iova, flags);
}

// IOMMU_IOAS_UNMAP; *unmapped gets the length written back (untouched on error).
inline int ioas_unmap(Harness& h, int fd, u32 ioas, u64 iova, u64 length,
                      u64* unmapped = nullptr) {
  iommu_ioas_unmap u{};
  u.size = sizeof(u);
  u.ioas_id = ioas;
  u.iova = iova;
  u.length = length;
  const int e = h.fails(fd, IOMMU_IOAS_UNMAP, &u);
  if (unmapped) *unmapped = u.length;
  return e;
}

inline int destroy(Harness& h, int fd, u32 id) {
  iommu_destroy d{sizeof(d), id};
  return h.fails(fd, IOMMU_DESTROY, &d);
}

// VFIO_DEVICE_BIND_IOMMUFD; returns errno, *devid on success.
inline int bind(Harness& h, int dev, int iommufd, u32* devid = nullptr) {
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = iommufd;
  const int e = h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, &b);
  if (e == 0 && devid) *devid = b.out_devid;
  return e;
}

// Opens the cdev `cdev` and binds it to a new iommufd (*iommufd); returns the device fd.
inline int bound_device(Harness& h, const char* cdev, int* iommufd) {
  *iommufd = h.open("iommu");
  const int dev = h.open(cdev);
  REQUIRE(dev >= 0);
  REQUIRE(bind(h, dev, *iommufd) == 0);
  return dev;
}

inline int attach(Harness& h, int dev, u32 pt_id, u32* hwpt = nullptr) {
  vfio_device_attach_iommufd_pt a{};
  a.argsz = sizeof(a);
  a.pt_id = pt_id;
  const int e = h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
  if (e == 0 && hwpt) *hwpt = a.pt_id;
  return e;
}

inline int detach(Harness& h, int dev) {
  vfio_device_detach_iommufd_pt d{};
  d.argsz = sizeof(d);
  return h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d);
}

// The usable IOVA ranges and alignment of an IOAS (IOAS_IOVA_RANGES, twice as the selftests do).
inline std::vector<iommu_iova_range> iova_ranges(Harness& h, int fd, u32 ioas,
                                                 u64* alignment = nullptr) {
  iommu_ioas_iova_ranges r{};
  r.size = sizeof(r);
  r.ioas_id = ioas;
  REQUIRE(h.fails(fd, IOMMU_IOAS_IOVA_RANGES, &r) == EMSGSIZE);
  std::vector<iommu_iova_range> out(r.num_iovas);
  r.allowed_iovas = reinterpret_cast<u64>(out.data());
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == 0);
  if (alignment) *alignment = r.out_iova_alignment;
  return out;
}

// The domains the emulator has registered (what the tools see).
inline std::vector<std::shared_ptr<core::HwDomain>> domains(Harness& h) { return h.emu.domains(); }

// Translates through the only registered domain.
inline iommu::Translation translate(Harness& h, u64 iova,
                                    iommu::Access a = iommu::Access::kRead) {
  auto doms = h.emu.domains();
  REQUIRE(doms.size() == 1);
  return doms[0]->hw->translate(iova, a);
}

inline u64 user_locked(Harness& h) {
  return h.emu.locked_memory().charged(core::iommufd_user_lock_key(h.caller.uid));
}
inline u64 process_locked(Harness& h) { return h.emu.locked_memory().charged(h.caller.pid); }

inline core::Topology parse_topology(const std::string& text) {
  std::string error;
  auto t = core::Topology::parse(text, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

}  // namespace vfio_emu::test
