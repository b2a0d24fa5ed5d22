// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "FastAttention",
    products: [
        .library(name: "FastAttention", targets: ["FastAttention"]),
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "ImageIO", targets: ["ImageIO"]),
        .executable(name: "attend", targets: ["attend"]),
        // Fuzz targets (Fuzz/README.md): libFuzzer under `make fuzz`, file replayers otherwise.
        .executable(name: "fuzz-png", targets: ["FuzzPNG"]),
        .executable(name: "fuzz-jpeg", targets: ["FuzzJPEG"]),
        .executable(name: "fuzz-safetensors", targets: ["FuzzSafeTensors"]),
        .executable(name: "fuzz-npy", targets: ["FuzzNPY"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // OpenBLAS (CBLAS + the LAPACK routines it ships), found through pkg-config.
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // Private C shims: libpng's simplified API and a setjmp-guarded libjpeg.
        // No stable API; only ImageIO imports it.
        .target(
            name: "CCodecs",
            linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]
        ),
        // Private C kernels with per-function target attributes and runtime CPU dispatch,
        // so vectorised code needs no unsafeFlags and the package stays importable.
        .target(name: "CKernels"),
        .target(name: "TensorCore", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "ImageIO", dependencies: ["CCodecs", "TensorCore"]),
        .target(name: "FastAttention", dependencies: ["TensorCore", "ImageIO"]),
        .executableTarget(
            name: "attend",
            dependencies: [
                "FastAttention", "TensorCore", "ImageIO", "CBLAS", "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // `swift run library-tour`: the library used from Swift code (README, "As a library").
        .executableTarget(name: "library-tour", dependencies: ["FastAttention", "TensorCore"], path: "Examples/LibraryTour"),
        // Fuzz targets: no flags here (so the package stays free of unsafeFlags); `make fuzz-build`
        // adds coverage, ASan and libFuzzer from the command line.
        .target(name: "CFuzzerDriver", path: "Fuzz/CFuzzerDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzerDriver"], path: "Fuzz/Support"),
        .executableTarget(name: "FuzzPNG", dependencies: ["FuzzSupport", "ImageIO"], path: "Fuzz/FuzzPNG"),
        .executableTarget(name: "FuzzJPEG", dependencies: ["FuzzSupport", "ImageIO"], path: "Fuzz/FuzzJPEG"),
        .executableTarget(name: "FuzzSafeTensors", dependencies: ["FuzzSupport", "TensorCore"], path: "Fuzz/FuzzSafeTensors"),
        .executableTarget(name: "FuzzNPY", dependencies: ["FuzzSupport", "TensorCore"], path: "Fuzz/FuzzNPY"),
        .target(name: "TestSupport", dependencies: ["TensorCore"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ImageIOTests", dependencies: ["ImageIO", "TestSupport"], exclude: ["Fixtures"]),
        // Fixtures are read from the source tree (Tests/*/Fixtures) by path, not as resources.
        .testTarget(
            name: "FastAttentionTests",
            dependencies: ["FastAttention", "TestSupport"],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "attendTests", dependencies: ["TestSupport"]),
    ],
    // Numeric kernels share unsafe pointers across concurrentPerform workers by design;
    // Swift 5 mode keeps that readable. The package still builds with the Swift 6 toolchain.
    swiftLanguageModes: [.v5]
)
