/**
 * Migration tests (docs/migration.md): the six IOMMU modes a VFIO program can run in, and one
 * session object that drives any of them with the same calls.
 */
export {
  IOMMU_MODES, IOMMU_MODE_NAMES, IommuSession, iommuMode, type DmaRegion, type IommuMode, type IommuModeName,
  type Scenario, type SessionCall, type SessionOptions,
} from './modes.js';
export {
  TRACE_FORMAT, TRACE_VERSION, TraceFormatError, TracedBinding, formatTrace, isHeader, readTrace, traceBinding, traceHeader,
  traceLine, type Decoded, type DecodedValue, type TraceCall, type TraceHeader, type TraceOptions, type TraceRecord, type TraceSink,
} from './trace.js';
export { replayPlan, traceScenario, type ReplayPlan, type ReplayStep, type SkippedCall } from './trace_replay.js';
export {
  COMPARE_REPORT_VERSION, compareModes, compareRuns, type Aspect, type CompareOptions, type CompareReport, type IovaLayout,
  type IovaSpan, type ModeRun, type ProbedSegment, type RunEnd, type StepCall, type StepComparison,
} from './compare.js';
export { answer, areasText, endText, formatReport, renderReportHtml, reportJson } from './report.js';
export {
  escapeXml, formatSize, LAYOUT_LEGEND, MARK_LEGEND, renderIovaLayoutSvg, type SvgLane, type SvgLayout, type SvgMark, type SvgOptions,
  type SvgSpan,
} from './layout_svg.js';
export {
  DIFFERENCES, observe, parseDifferences, renderDifferences, unshownHolds, type Difference, type DifferenceTable,
  type Probe, type ProbeEnv,
} from './differences.js';
