// examples/unmap-subrange.mjs's scenario from a module that imports the package, as a user's
// scenario would (its error class, the migration API's mode names): bench/cli.ts times
// `ioasid compare` on it. The last unmap, of nothing, is refused by iommufd with the package's
// own IommuError.
import { IommuError } from 'ioasid';
import { IOMMU_MODE_NAMES } from 'ioasid/migration';
import unmapSubrange from '../examples/unmap-subrange.mjs';

export default function unmapImports(s) {
  if (!IOMMU_MODE_NAMES.includes(s.mode.name)) throw new Error(`unknown mode ${s.mode.name}`);
  unmapSubrange(s);
  try {
    s.unmap({ iova: 0x100000n, size: 0x1000n });
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
  }
}
