/**
 * IOMMU groups of PCI topologies, computed with Linux 7.3's rules (drivers/iommu/iommu.c
 * pci_device_group, drivers/pci/search.c pci_for_each_dma_alias, drivers/pci/pci.c
 * pci_acs_enabled / pci_acs_path_enabled). Each case names the rule that decides it; the q35 case
 * is the grouping the project's VM reports (test/sim-machine.vm-probe.txt). Sim-only: the real
 * kernel's topology is the VM's, these are topologies no VM here has.
 */
import { describe, expect, it } from 'vitest';
import { assignGroups } from '../src/backends/sim/iommu/groups.js';
import { PCI_ACS, PciTopology, REQ_ACS_FLAGS, type PciNodeDesc } from '../src/backends/sim/hw/pci.js';
import { q35Edu } from '../src/backends/sim/machine/presets.js';
import { BACKEND } from './helpers.js';

const SKIP = BACKEND === 'linux';
const SIM_ONLY = SKIP ? ' (skipped on linux: a unit test of the sim machine model)' : '';

const ACS = { caps: REQ_ACS_FLAGS };
const ep = (slot: number, fn = 0, extra: Partial<PciNodeDesc> = {}): PciNodeDesc => ({ slot, fn, kind: 'endpoint', ...extra });

interface Case {
  name: string;
  /** The rule of iommu.c/pci.c/search.c that decides the expected grouping. */
  rule: string;
  pci: readonly PciNodeDesc[];
  /** bdf -> group number, in Linux's probe order numbering. */
  groups: Record<string, number>;
}

const CASES: Case[] = [
  {
    name: 'the project VM (q35, pcie-pci-bridge with two conventional edus)',
    rule: 'conventional functions behind a PCIe-to-PCI bridge alias to <secondary bus>:00.0 (pci_for_each_dma_alias, ' +
      'PCI_EXP_TYPE_PCI_BRIDGE) and join the bridge\'s group; the ICH9 functions are conventional multifunction, never ' +
      'ACS-isolated (pci_acs_enabled: !pci_is_pcie) and share (get_pci_function_alias_group); numbering follows ' +
      'pci_bus_add_devices: bus 0 first, then bus 1 (as the VM shows)',
    pci: q35Edu().pci,
    groups: {
      '0000:00:00.0': 0, '0000:00:01.0': 1, '0000:00:02.0': 2, '0000:00:03.0': 3, '0000:00:04.0': 4,
      '0000:00:1f.0': 5, '0000:00:1f.2': 5, '0000:00:1f.3': 5, '0000:01:01.0': 2, '0000:01:02.0': 2,
    },
  },
  {
    name: 'root port with ACS, one endpoint',
    rule: 'pci_acs_path_enabled(root port) stops the upstream walk: the endpoint gets its own group, the port too',
    pci: [{ slot: 0x1c, kind: 'root-port', acs: ACS, bus: [ep(0)] }],
    groups: { '0000:00:1c.0': 0, '0000:01:00.0': 1 },
  },
  {
    name: 'root port without ACS',
    rule: 'pci_acs_enabled(root port) is false without the ACS capability: the walk moves to the port and takes its group',
    pci: [{ slot: 0x1c, kind: 'root-port', bus: [ep(0)] }],
    groups: { '0000:00:1c.0': 0, '0000:01:00.0': 0 },
  },
  {
    name: 'root port whose ACS lacks Upstream Forwarding in the control register',
    rule: 'pci_acs_flags_enabled: implemented flags must all be enabled in ACS_CTRL (REQ_ACS_FLAGS = SV|RR|CR|UF)',
    pci: [{ slot: 0x1c, kind: 'root-port', acs: { caps: REQ_ACS_FLAGS, ctrl: PCI_ACS.SV | PCI_ACS.RR | PCI_ACS.CR }, bus: [ep(0)] }],
    groups: { '0000:00:1c.0': 0, '0000:01:00.0': 0 },
  },
  {
    name: 'root port whose ACS implements only SV',
    rule: 'flags the capability does not implement count as hard-wired enabled (acs_flags &= caps | EC)',
    pci: [{ slot: 0x1c, kind: 'root-port', acs: { caps: PCI_ACS.SV }, bus: [ep(0)] }],
    groups: { '0000:00:1c.0': 0, '0000:01:00.0': 1 },
  },
  {
    name: 'switch with ACS downstream ports',
    rule: 'every port on the path has ACS (the upstream port is single-function: ACS not applicable, counted enabled): ' +
      'ports and endpoints each alone; buses are numbered depth first',
    pci: [{
      slot: 1, kind: 'root-port', acs: ACS,
      bus: [{ slot: 0, kind: 'upstream', bus: [
        { slot: 0, kind: 'downstream', acs: ACS, bus: [ep(0)] },
        { slot: 1, kind: 'downstream', acs: ACS, bus: [ep(0)] },
      ] }],
    }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:02:00.0': 2, '0000:02:01.0': 3, '0000:03:00.0': 4, '0000:04:00.0': 5 },
  },
  {
    name: 'switch without ACS on its downstream ports',
    rule: 'each endpoint stops at its downstream port (no ACS) and joins that port\'s group; the ports themselves are ' +
      'isolated upstream (upstream port and root port pass) and are not aliases of each other',
    pci: [{
      slot: 1, kind: 'root-port', acs: ACS,
      bus: [{ slot: 0, kind: 'upstream', bus: [
        { slot: 0, kind: 'downstream', bus: [ep(0)] },
        { slot: 1, kind: 'downstream', bus: [ep(0)] },
      ] }],
    }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:02:00.0': 2, '0000:02:01.0': 3, '0000:03:00.0': 2, '0000:04:00.0': 3 },
  },
  {
    name: 'multifunction endpoint without ACS behind an ACS root port',
    rule: 'get_pci_function_alias_group: functions of one slot that are not ACS-isolated share',
    pci: [{ slot: 1, kind: 'root-port', acs: ACS, bus: [ep(0, 0), ep(0, 1), ep(0, 2)] }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:01:00.1': 1, '0000:01:00.2': 1 },
  },
  {
    name: 'multifunction endpoint with ACS on every function',
    rule: 'pci_acs_enabled(multifunction endpoint) checks its ACS capability: isolated functions get their own groups',
    pci: [{ slot: 1, kind: 'root-port', acs: ACS, bus: [ep(0, 0, { acs: ACS }), ep(0, 1, { acs: ACS })] }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:01:00.1': 2 },
  },
  {
    name: 'multifunction endpoint where only function 1 has ACS',
    rule: 'function 0 (no ACS) looks for non-isolated siblings: function 1 is isolated, so none; both alone',
    pci: [{ slot: 1, kind: 'root-port', acs: ACS, bus: [ep(0, 0), ep(0, 1, { acs: ACS })] }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:01:00.1': 2 },
  },
  {
    name: 'conventional PCI bridge behind a root port',
    rule: 'a conventional bridge takes ownership of downstream transactions: devices alias to the bridge\'s own RID',
    pci: [{ slot: 1, kind: 'root-port', acs: ACS, bus: [{ slot: 0, kind: 'pci-bridge', bus: [{ slot: 4, kind: 'pci' }, { slot: 5, kind: 'pci' }] }] }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 1, '0000:02:04.0': 1, '0000:02:05.0': 1 },
  },
  {
    name: 'DMA alias quirk on the root bus',
    rule: 'pci_devs_are_dma_aliases via dma_alias_mask: get_pci_alias_group finds the other function\'s group',
    pci: [{ slot: 2, kind: 'rc-endpoint' }, { slot: 3, kind: 'rc-endpoint', quirks: { dmaAliases: [2 << 3] } }, { slot: 4, kind: 'rc-endpoint' }],
    groups: { '0000:00:02.0': 0, '0000:00:03.0': 0, '0000:00:04.0': 1 },
  },
  {
    name: 'RC-integrated endpoints, single and multifunction',
    rule: 'single-function RC endpoints need no ACS (PCIe 6.12.1.3); a multifunction RC endpoint without ACS shares',
    pci: [{ slot: 2, kind: 'rc-endpoint' }, { slot: 3, fn: 0, kind: 'rc-endpoint' }, { slot: 3, fn: 1, kind: 'rc-endpoint' }],
    groups: { '0000:00:02.0': 0, '0000:00:03.0': 1, '0000:00:03.1': 1 },
  },
  {
    name: 'ACS quirk on a root port without the capability',
    rule: 'pci_dev_specific_acs_enabled (e.g. Intel PCH root ports) decides before the capability is looked at',
    pci: [{ slot: 0x1c, kind: 'root-port', quirks: { acsEnabled: true }, bus: [ep(0)] }, { slot: 0x1d, kind: 'root-port', bus: [ep(0)] }],
    groups: { '0000:00:1c.0': 0, '0000:00:1d.0': 1, '0000:01:00.0': 2, '0000:02:00.0': 1 },
  },
  {
    name: 'PCIe-to-PCI bridge behind a root port without ACS',
    rule: 'the edus alias to the bridge; the bridge (never ACS: PCI_EXP_TYPE_PCI_BRIDGE) stops at the root port without ACS and shares its group',
    pci: [{ slot: 1, kind: 'root-port', bus: [{ slot: 0, kind: 'pcie-to-pci', bus: [{ slot: 1, kind: 'pci' }] }] }],
    groups: { '0000:00:01.0': 0, '0000:01:00.0': 0, '0000:02:01.0': 0 },
  },
];

describe(`IOMMU group rules${SIM_ONLY}`, () => {
  for (const c of CASES) {
    it.skipIf(SKIP)(`${c.name}: ${c.rule}`, () => {
      const topo = new PciTopology(c.pci);
      const got = Object.fromEntries([...assignGroups(topo)].map(([n, g]) => [n.name, g]));
      expect(got).toEqual(c.groups);
    });
  }

  it.skipIf(SKIP)('new groups take the lowest free number (iommu_group_alloc\'s ida)', () => {
    const topo = new PciTopology([{ slot: 1, kind: 'rc-endpoint' }, { slot: 2, kind: 'rc-endpoint' }]);
    expect([...assignGroups(topo, new Set([0, 2])).values()]).toEqual([1, 3]);
  });

  it.skipIf(SKIP)('the probe order is Linux\'s: every function of a bus, then each bridge\'s bus in turn', () => {
    const topo = new PciTopology(q35Edu().pci);
    expect(topo.probeOrder.map((n) => n.name)).toEqual([
      '0000:00:00.0', '0000:00:01.0', '0000:00:02.0', '0000:00:03.0', '0000:00:04.0', '0000:00:1f.0', '0000:00:1f.2',
      '0000:00:1f.3', '0000:01:01.0', '0000:01:02.0',
    ]);
  });
});
