import IsolabProtocol

/// The kernel's own selftests a `selftest` step can run: tools/testing/selftests/vfio (mainline
/// since v6.18) and tools/testing/selftests/iommu, built by isolab from the catalog's selftest
/// kernel source.
public enum KernelSelftest: String, CaseIterable, Sendable {
    case vfioDMAMapping = "vfio_dma_mapping_test"
    case vfioDMAMappingMMIO = "vfio_dma_mapping_mmio_test"
    case vfioIOMMUFDSetup = "vfio_iommufd_setup_test"
    case vfioPCIDevice = "vfio_pci_device_test"
    case vfioPCIDeviceInitPerf = "vfio_pci_device_init_perf_test"
    case vfioPCIDriver = "vfio_pci_driver_test"
    case vfioPCISRIOVUAPI = "vfio_pci_sriov_uapi_test"
    case iommufd
    case iommufdFailNth = "iommufd_fail_nth"

    /// Whether the program is one of the VFIO suite's (a device BDF on its command line).
    public var isVFIO: Bool { rawValue.hasPrefix("vfio_") }
}

/// What a subtest of a kselftest program ends as (its TAP line).
public enum SubtestOutcome: String, Sendable, Equatable, Codable {
    case pass, fail, skip, xfail, xpass

    /// Whether the harness counts it as passed (kselftest_harness.h `__test_passed()`): all but
    /// `fail`. A program whose subtests all pass so exits 0, else 1.
    public var passes: Bool { self != .fail }
}

/// Which subtests a rule covers, by the harness's name `FIXTURE.VARIANT.TEST` (`FIXTURE.TEST`
/// without variants). nil parts match anything.
public struct SubtestPattern: Sendable, Equatable {
    public var fixture: String?
    /// The variant is exactly this.
    public var variant: String?
    /// The variant runs in this IOMMU mode (``SelftestIOMMUMode/of(variant:)``).
    public var iommuMode: String?
    /// The variant contains this (`hugetlb`).
    public var variantContains: String?
    public var test: String?

    public init(fixture: String? = nil, variant: String? = nil, variantContains: String? = nil, test: String? = nil) {
        self.fixture = fixture
        self.variant = variant
        self.variantContains = variantContains
        self.test = test
    }

    /// Every subtest.
    public static let all = SubtestPattern()

    public func matches(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first, let last = parts.last else { return false }
        let variant = parts.count >= 3 ? parts[1..<(parts.count - 1)].joined(separator: ".") : ""
        if let f = fixture, f != first { return false }
        if let t = test, t != last || parts.count < 2 { return false }
        if let v = self.variant, v != variant { return false }
        if let m = iommuMode, SelftestIOMMUMode.of(variant: variant)?.rawValue != m { return false }
        if let c = variantContains, !variant.contains(c) { return false }
        return true
    }

    public var description: String {
        var parts: [String] = []
        if let fixture { parts.append("fixture \(fixture)") }
        if let variant { parts.append("variant \(variant)") }
        if let iommuMode { parts.append("IOMMU mode \(iommuMode)") }
        if let variantContains { parts.append("variants *\(variantContains)*") }
        if let test { parts.append("test \(test)") }
        return parts.isEmpty ? "every subtest" : parts.joined(separator: ", ")
    }
}

/// One expectation: the subtests it covers end as `outcome`, because of `rule`.
public struct SubtestRule: Sendable, Equatable {
    public var pattern: SubtestPattern
    public var outcome: SubtestOutcome
    public var rule: Reason

    public init(_ pattern: SubtestPattern, _ outcome: SubtestOutcome, _ rule: Reason) {
        self.pattern = pattern
        self.outcome = outcome
        self.rule = rule
    }
}

/// The model's prediction of a `selftest` step: the program as a whole (it may end before its
/// harness runs a test) and each subtest by the first rule that covers it.
public struct SelftestPrediction: Sendable, Equatable {
    public var program: String
    /// Set when the program ends before its harness runs any test: `skipped` (exit 4) or
    /// `failed` (an assertion in its `main`), and why.
    public var prelude: (result: StepResult, rule: Reason)?
    /// First match wins; a subtest no rule covers is expected to pass (`otherwise`).
    public var rules: [SubtestRule]
    public var otherwise: Reason

    public static func == (a: SelftestPrediction, b: SelftestPrediction) -> Bool {
        a.program == b.program && a.rules == b.rules && a.otherwise == b.otherwise
            && a.prelude?.result == b.prelude?.result && a.prelude?.rule == b.prelude?.rule
    }

    /// What the named subtest should end as, and why.
    public func expectation(for name: String) -> (outcome: SubtestOutcome, rule: Reason) {
        if let r = rules.first(where: { $0.pattern.matches(name) }) { return (r.outcome, r.rule) }
        return (.pass, otherwise)
    }

    /// The step's result for a run of `subtests` (the names the program reported): the prelude's,
    /// else `failed` when a subtest is expected to fail (the harness then exits 1), else `ok`.
    public func result(for subtests: [String]) -> StepResult {
        if let prelude { return prelude.result }
        return subtests.contains(where: { !expectation(for: $0).outcome.passes }) ? .failed : .ok
    }
}
