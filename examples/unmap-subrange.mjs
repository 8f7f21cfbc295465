// A scenario for `ioasid compare` (docs/migration.md, "Comparing modes on your own code"): map four
// pages of one buffer at IOVA 0x100000, unmap the second page, then the first, then everything.
// The container's type1 driver (v1 and v2), iommufd's compat container and native iommufd answer
// the sub-range unmaps differently.
//
//   ioasid compare examples/unmap-subrange.mjs --html report.html
//
// A scenario is a module whose default export takes an IommuSession (ioasid/migration); it runs
// once per mode, each time in a fresh session. This one drives the test VM's edu at 0000:00:01.0
// (alone in its IOMMU group), which the sim's default machine has too.
const PAGE = 0x1000n;
const IOVA = 0x100000n;

export default function unmapSubrange(s) {
  s.openDevice('0000:00:01.0');
  s.map({ mem: s.alloc(4 * 0x1000), iova: IOVA });
  for (const iova of [IOVA + PAGE, IOVA]) {
    try {
      s.unmap({ iova, size: PAGE });
    } catch (e) {
      // a refusal is an answer too: the step records its errno; go on with the next call
      if (e?.name !== 'IommuError') throw e;
    }
  }
  s.unmapAll();
}
