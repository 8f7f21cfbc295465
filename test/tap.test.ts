/**
 * The kselftest TAP reader (src/bridge/tap.ts). Backend-independent: it reads text only.
 * tap.kernel-excerpt.txt is cut (whole cases, in order) from the kernel's own `iommufd` selftest
 * binary run as root on the real 7.3 kernel in the test VM (2>&1, as scripts/selftests/build.sh
 * builds it). Lines the real run did not print (XFAIL, XPASS, error, Bail out, a case cut short)
 * are written from the printf formats in tools/testing/selftests/kselftest.h and
 * kselftest_harness.h, quoted beside each.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compareTap, parseTap } from '../src/bridge/tap.js';

const kernel = readFileSync(new URL('./tap.kernel-excerpt.txt', import.meta.url), 'utf8');

describe('kselftest TAP reader', () => {
  it('reads the real kernel run: plan, verdicts, reasons, per-case output, totals', () => {
    const run = parseTap(kernel);
    expect(run.planned).toBe(246);
    expect(run.cases.map((c) => [c.number, c.name, c.verdict])).toEqual([
      [1, 'iommufd.simple_close', 'pass'],
      [39, 'iommufd_ioas.no_domain.copy_sweep', 'pass'],
      [40, 'iommufd_ioas.no_domain.dmabuf_simple', 'fail'],
      [41, 'iommufd_ioas.no_domain.dmabuf_revoke', 'fail'],
      [230, 'iommufd_viommu.no_viommu.viommu_negative_tests', 'pass'],
      [231, 'iommufd_viommu.no_viommu.viommu_alloc_nested_iopf', 'skip'],
    ]);
    const byName = new Map(run.cases.map((c) => [c.name, c]));
    const skip = byName.get('iommufd_viommu.no_viommu.viommu_alloc_nested_iopf')!;
    expect(skip.reason).toBe('Skipping test for variant no_viommu');
    expect(skip.output).toEqual([
      '#      SKIP      Skipping test for variant no_viommu',
      '#            OK  iommufd_viommu.no_viommu.viommu_alloc_nested_iopf',
    ]);
    const fail = byName.get('iommufd_ioas.no_domain.dmabuf_revoke')!;
    expect(fail.reason).toBeUndefined();
    expect(fail.output).toEqual([
      '# iommufd.c:1612:dmabuf_revoke:Expected 0 (0) == _test_cmd_revoke_dmabuf(self->fd, dfd, 1) (-1)',
      '# dmabuf_revoke: Test terminated by assertion',
      '#          FAIL  iommufd_ioas.no_domain.dmabuf_revoke',
    ]);
    expect(byName.get('iommufd.simple_close')!.output).toEqual(['#            OK  iommufd.simple_close']);
    // The harness's own totals are of the whole run; the excerpt's cases are counted apart.
    expect(run.totals).toEqual({ pass: 233, fail: 8, xfail: 0, xpass: 0, skip: 5, error: 0 });
    expect(run.counted).toEqual({ pass: 3, fail: 2, xfail: 0, xpass: 0, skip: 1, error: 0 });
    expect(run.other).toEqual([
      '# Starting 246 tests from 29 test cases.',
      '# FAILED: 238 / 246 tests passed.',
      '# 5 skipped test(s) detected. Consider enabling relevant config options to improve coverage.',
    ]);
    expect(run.bailOut).toBeUndefined();
    expect(run.skippedAll).toBeUndefined();
  });

  it('reads the directives and endings the real run did not print', () => {
    const run = parseTap(
      [
        '1..6',
        '#  RUN           f.v.a ...',
        'ok 1 f.v.a # XFAIL known broken', // "ok %u # XFAIL " via ksft_test_result_code
        '#  RUN           f.v.b ...',
        'ok 2 f.v.b # XPASS unknown', // KSFT_XPASS with no reason: diagnostic "unknown"
        '#  RUN           f.c ...',
        'not ok 3 f.c #  reason text', // failure with a reason: directive " #  "
        '#  RUN           f.d ...',
        'not ok 4 # error lost', // ksft_test_result_error: no test name
        '#  RUN           f.e ...',
        '# f.c:1:e:still running',
        'Bail out! child died', // ksft_exit_fail_msg
      ].join('\n'),
    );
    expect(run.cases.map((c) => [c.name, c.verdict, c.reason])).toEqual([
      ['f.v.a', 'xfail', 'known broken'],
      ['f.v.b', 'xpass', 'unknown'],
      ['f.c', 'fail', 'reason text'],
      ['f.d', 'error', 'lost'],
      ['f.e', 'incomplete', undefined],
    ]);
    expect(run.cases[4]!.number).toBeNull();
    expect(run.cases[4]!.output).toEqual(['# f.c:1:e:still running', 'Bail out! child died']);
    expect(run.bailOut).toBe('child died');
    expect(run.totals).toBeNull();
    expect(run.counted).toEqual({ pass: 0, fail: 1, xfail: 1, xpass: 1, skip: 0, error: 2 });
  });

  it('reads a binary that skipped before running anything', () => {
    const run = parseTap('TAP version 13\n1..0 # SKIP no /dev/iommu\n'); // ksft_exit_skip before a plan
    expect(run).toMatchObject({ planned: 0, skippedAll: 'no /dev/iommu', cases: [] });
  });

  it('compares two runs case by case', () => {
    const real = parseTap(kernel);
    // The same run with one failure turned into a pass, one case missing and one added.
    const other = parseTap(
      kernel
        .replace('not ok 40 iommufd_ioas.no_domain.dmabuf_simple', 'ok 40 iommufd_ioas.no_domain.dmabuf_simple')
        .replaceAll('iommufd.simple_close', 'iommufd.simple_close_renamed'),
    );
    const cmp = compareTap(real, other);
    expect(cmp.differ).toEqual([{ name: 'iommufd_ioas.no_domain.dmabuf_simple', a: 'fail', b: 'pass' }]);
    expect(cmp.onlyA).toEqual(['iommufd.simple_close']);
    expect(cmp.onlyB).toEqual(['iommufd.simple_close_renamed']);
    expect(cmp.same).toBe(4);
    const self = compareTap(real, real);
    expect(self).toEqual({ differ: [], onlyA: [], onlyB: [], same: 6 });
  });
});
