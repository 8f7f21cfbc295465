/**
 * Migration tests (docs/migration.md): the six IOMMU modes a VFIO program can run in, and one
 * session object that drives any of them with the same calls.
 */
export {
  IOMMU_MODES, IOMMU_MODE_NAMES, IommuSession, iommuMode, type DmaRegion, type IommuMode, type IommuModeName,
  type Scenario, type SessionCall, type SessionOptions,
} from './modes.js';
export {
  DIFFERENCES, observe, parseDifferences, renderDifferences, unshownHolds, type Difference, type DifferenceTable,
  type Probe, type ProbeEnv,
} from './differences.js';
