// The no-op IOMMU: nothing is ever mapped, every map is refused.
#include <catch2/catch.hpp>

#include "iommu/nop/nop.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;

TEST_CASE("nop: every map is refused, nothing translates", "[nop]") {
  nop::NopUnit unit("nop0");
  CHECK(unit.name() == "nop0");
  CHECK(unit.page_sizes() == 0);
  auto r = unit.create_domain();
  REQUIRE(r.ok());
  auto d = r.take();
  CHECK(d->model() == Model::kNop);
  CHECK(d->map(0, 0x1000, 4096, kProtRW).error() == EOPNOTSUPP);
  CHECK(d->map(0, 0, 0, 0).error() == EOPNOTSUPP);
  CHECK(d->translate(0, Access::kRead).fault == FaultReason::kOutOfAperture);
  CHECK(d->translate(kU64Max, Access::kWrite).fault == FaultReason::kOutOfAperture);
  CHECK(*d->unmap(0, kU64Max) == 0);
  CHECK(d->unmap(1, 0).error() == EINVAL);
  CHECK(d->aperture().empty());
  CHECK(d->page_sizes() == 0);
  CHECK(d->levels() == 0);
  int visits = 0;
  d->walk(0, kU64Max, [&](const LeafView&) { ++visits; });
  CHECK(visits == 0);
  CHECK(d->stats().tables == 0);
}
