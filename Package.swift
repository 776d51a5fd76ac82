// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "isolab",
    products: [
        .executable(name: "isolab", targets: ["isolab"]),
        .library(name: "IsolabModel", targets: ["IsolabModel"]),
        // The guest agent; link it fully static: ci/build-agent.
        .executable(name: "isolab-agent", targets: ["isolab-agent"]),
        .library(name: "IsolabLibvirt", targets: ["IsolabLibvirt"]),
        .library(name: "IsolabVM", targets: ["IsolabVM"]),
        .library(name: "IsolabReport", targets: ["IsolabReport"]),
        .library(name: "IsolabEngine", targets: ["IsolabEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // Pure model: topology tree, guest paths, grouping, reachability, ownership. No I/O. Shares
        // the step and sub-step vocabulary of IsolabProtocol (pure as well) with the agent.
        .target(name: "IsolabModel", dependencies: ["IsolabProtocol"]),
        // YAML topology files -> validated IsolabModel.Topology, errors with file:line:column.
        .target(name: "IsolabTopology", dependencies: ["IsolabModel", "IsolabProtocol", .product(name: "Yams", package: "Yams")]),
        // Kernel and emulator catalogs, apt fetch into a private cache, initramfs recipe,
        // content-addressed image cache, emulator facts probed from the binaries.
        .target(name: "IsolabImages", dependencies: [
            "IsolabModel",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Plan (host -> guest) and records (guest -> host), shared by both; bounded stream parser.
        .target(name: "IsolabProtocol"),
        // C shim: the legacy VFIO ioctls of <linux/vfio.h>, termios raw mode, MMIO accessors, the
        // clone(2)d sysfs writer (ChildWrite.c); -errno results.
        .target(name: "CVFIO"),
        // The agent's pure parts (guest paths, kmsg and DMAR fault lines, config space, errno
        // names), testable on the host. FoundationEssentials at most.
        .target(name: "IsolabAgentCore", dependencies: ["IsolabProtocol"]),
        // Runs inside the guest: inventory, driver binds, VFIO, edu DMA probes; JSON-line records.
        // Imports FoundationEssentials only, so it links with -static-executable.
        .executableTarget(name: "isolab-agent", dependencies: ["IsolabProtocol", "IsolabAgentCore", "CVFIO"]),
        // libvirt's C API (libvirt.h, virterror.h, libvirt-qemu.h) as a Swift module.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        // Thin Swift wrapper: connections (embedded root by default), event-loop thread,
        // domains, lifecycle events, libvirt errors as Swift errors.
        .target(name: "IsolabLibvirt", dependencies: ["CLibvirt", .product(name: "Logging", package: "swift-log")]),
        // Topology -> libvirt domain XML and guest plan; one VM run to completion; the scheduler.
        .target(name: "IsolabVM", dependencies: ["IsolabModel", "IsolabProtocol", "IsolabImages", "IsolabLibvirt",
                                                  .product(name: "Logging", package: "swift-log")]),
        // `isolab explore`'s pure parts: random fabrics by seed, their topology files, the shrinker.
        .target(name: "IsolabExplore", dependencies: ["IsolabModel", "IsolabTopology"]),
        // Verdicts (prediction vs observation), results JSON, JUnit/TAP/Markdown/HTML, diff, merge. No I/O.
        .target(name: "IsolabReport", dependencies: ["IsolabModel", "IsolabProtocol"]),
        // One engine for every command that boots: cells (fabric × kernel × vIOMMU × emulator),
        // provisioning (images), execution (the fleet over libvirt connections), judging and
        // report files. The commands only parse options and print.
        .target(name: "IsolabEngine", dependencies: [
            "IsolabExplore", "IsolabModel", "IsolabTopology", "IsolabImages", "IsolabProtocol", "IsolabVM", "IsolabLibvirt", "IsolabReport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "isolab", dependencies: [
            "IsolabEngine", "IsolabModel", "IsolabTopology", "IsolabImages", "IsolabProtocol", "IsolabVM", "IsolabLibvirt", "IsolabReport",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Benchmarks (not tests): prints figures, never passes or fails on time.
        .executableTarget(name: "isolab-bench", dependencies: ["IsolabEngine", "IsolabModel", "IsolabTopology", "IsolabImages", "IsolabVM", "IsolabLibvirt", "IsolabProtocol", "IsolabReport"]),
        .testTarget(name: "IsolabModelTests", dependencies: ["IsolabModel", "IsolabTopology", "IsolabProtocol"]),
        .testTarget(name: "IsolabTopologyTests", dependencies: ["IsolabTopology", "IsolabModel", .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "IsolabImagesTests", dependencies: ["IsolabImages"]),
        .testTarget(name: "IsolabCLITests", dependencies: [], exclude: ["Fixtures"]),
        .testTarget(name: "IsolabExploreTests", dependencies: ["IsolabExplore", "IsolabModel", "IsolabTopology"]),
        .testTarget(name: "IsolabReportTests", dependencies: ["IsolabReport", "IsolabModel", "IsolabProtocol", "IsolabTopology"]),
        .testTarget(name: "IsolabProtocolTests", dependencies: ["IsolabProtocol"]),
        .testTarget(name: "IsolabAgentCoreTests", dependencies: ["IsolabAgentCore", "IsolabProtocol"]),
        .testTarget(name: "IsolabLibvirtTests", dependencies: ["IsolabLibvirt"]),
        .testTarget(name: "IsolabEngineTests", dependencies: ["IsolabEngine", "IsolabModel", "IsolabTopology"]),
        .testTarget(name: "IsolabVMTests", dependencies: ["IsolabVM", "IsolabLibvirt", "IsolabModel", "IsolabTopology", "IsolabImages", "IsolabProtocol"],
                    exclude: ["golden"]),
    ],
    swiftLanguageModes: [.v5]
)
