// examples/unmap-subrange.mjs's scenario, importing the package as a user's scenario would (its
// error class, and the migration API's mode names): bench/cli.ts times `ioasid compare` on it.
import { IommuError } from 'ioasid';
import { IOMMU_MODE_NAMES } from 'ioasid/migration';

const PAGE = 0x1000n;
const IOVA = 0x100000n;

export default function unmapSubrange(s) {
  if (!IOMMU_MODE_NAMES.includes(s.mode.name)) throw new Error(`unknown mode ${s.mode.name}`);
  s.openDevice('0000:00:01.0');
  s.map({ mem: s.alloc(4 * 0x1000), iova: IOVA });
  for (const iova of [IOVA + PAGE, IOVA]) {
    try {
      s.unmap({ iova, size: PAGE });
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
    }
  }
  s.unmapAll();
}
