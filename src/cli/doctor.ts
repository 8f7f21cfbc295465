/** `ioasid doctor`'s report: the findings by area, one line each, then the two verdicts. */
import type { Diagnosis, Finding } from '../doctor/checks.js';

const TAG: Record<Finding['level'], string> = { ok: 'ok  ', info: 'info', warn: 'WARN', fail: 'FAIL' };
const AREAS: Finding['area'][] = ['kernel', 'iommu', 'devices', 'limits'];

/** One finding as a line: its level, what is the matter, and (after "->") what to do. */
export function findingLine(f: Finding): string {
  return `${TAG[f.level]}  ${f.text}${f.fix ? ` -> ${f.fix}` : ''}`;
}

export function formatDiagnosis(d: Diagnosis): string[] {
  const out = [`ioasid doctor: ${d.host}${d.release ? ` (Linux ${d.release})` : ''}`];
  for (const area of AREAS) {
    const here = d.findings.filter((f) => f.area === area);
    if (here.length) out.push('', area, ...here.map((f) => `  ${findingLine(f)}`));
  }
  const verdict = (v: Diagnosis['iommufd']): string => (v.usable ? 'usable' : `NOT usable: ${v.reason}`);
  out.push('', `iommufd: ${verdict(d.iommufd)}`, `VFIO:    ${verdict(d.vfio)}`);
  return out;
}
