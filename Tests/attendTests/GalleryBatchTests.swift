import Foundation
import TensorCore
import TestSupport
import XCTest

/// `attend gallery` (contact sheet + HTML page, opened in headless Chromium where installed)
/// and `attend batch` (bad inputs, resume, shards, a kill mid-run).
final class GalleryBatchTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A folder with two small photos (copied from SampleImages) and, optionally, a corrupt one.
    func photoFolder(corrupt: Bool = false, copies: Int = 1) throws -> URL {
        let f = dir.appendingPathComponent("photos")
        try FileManager.default.createDirectory(at: f, withIntermediateDirectories: true)
        let root = repositoryRoot().appendingPathComponent("SampleImages")
        for i in 0..<copies {
            for name in ["cat_chelsea.jpg", "gray_camera.png"] {
                let dst = copies == 1 ? name : "\(i)-\(name)"
                try FileManager.default.copyItem(at: root.appendingPathComponent(name), to: f.appendingPathComponent(dst))
            }
        }
        if corrupt { try Data("GIF89a not really".utf8).write(to: f.appendingPathComponent("broken.png")) }
        return f
    }

    func testGalleryWritesSheetAndPage() throws {
        let photos = try photoFolder()
        let out = dir.appendingPathComponent("gallery")
        let r = try runProduct("attend", ["gallery", photos.path, "--modules", "all", "--out", out.path, "--grid", "12", "--cell", "96"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOf: out.appendingPathComponent("index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("cells/non-local/cat_chelsea_jpg.png"))
        XCTAssertTrue(html.contains("Non-local Neural Networks"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("gallery.png").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("cells/non-local/gray_camera_png.png").path))
        try checkInChromium(out.appendingPathComponent("index.html"))
    }

    /// Loads the page in headless Chromium: the page's own script counts loaded and broken
    /// images into #status; the screenshot must not be blank.
    func checkInChromium(_ page: URL) throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("SKIP: headless Chromium is not installed (apt-get install chromium); the gallery page was not rendered")
            return
        }
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                      "--virtual-time-budget=5000"]
        let dom = try runExternal(chromium, common + ["--dump-dom", page.absoluteString])
        XCTAssertTrue(dom.contains("loaded, 0 broken"), String(dom.prefix(2000)))
        XCTAssertFalse(dom.contains("images: not yet checked"))
        let shot = dir.appendingPathComponent("shot.png")
        _ = try runExternal(chromium, common + ["--screenshot=\(shot.path)", "--window-size=1200,800", page.absoluteString])
        let data = try Data(contentsOf: shot)
        XCTAssertGreaterThan(data.count, 10_000, "screenshot looks blank")
    }

    func runExternal(_ path: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    func testBatchReportsBadFileFinishesOthersAndResumes() throws {
        let photos = try photoFolder(corrupt: true)
        let out = dir.appendingPathComponent("out")
        let args = ["batch", photos.path, "--module", "non-local", "--out", out.path, "--grid", "12", "--quiet"]
        let r = try runProduct("attend", args)
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("broken.png"), r.stderr)
        for name in ["cat_chelsea_jpg.npy", "gray_camera_png.npy"] {
            let t = try NPY.read(contentsOf: out.appendingPathComponent(name))
            XCTAssertEqual(t.shape[1], 16)
        }
        let csv = try String(contentsOf: out.appendingPathComponent("summary.csv"), encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 4, csv)
        XCTAssertTrue(csv.contains("broken.png,error"), csv)
        // A rerun skips what is done and retries only the bad file.
        let again = try runProduct("attend", args + ["--dry-run"])
        XCTAssertTrue(again.stdout.contains("2 already done, 1 to run"), again.stdout)
    }

    func testTwoShardsCoverTheFolderExactlyOnce() throws {
        let photos = try photoFolder(copies: 3)                      // 6 photos
        var seen: [String] = []
        for i in 0..<2 {
            let out = dir.appendingPathComponent("shard\(i)")
            let r = try runProduct("attend", ["batch", photos.path, "--module", "non-local", "--out", out.path,
                                              "--grid", "8", "--quiet", "--shard", "\(i)/2"])
            XCTAssertEqual(r.status, 0, r.stderr)
            seen += try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".npy") }
        }
        XCTAssertEqual(seen.count, 6)
        XCTAssertEqual(Set(seen).count, 6)
        // The same split from Slurm's environment.
        let out = dir.appendingPathComponent("slurm")
        let r = try runProduct("attend", ["batch", photos.path, "--module", "non-local", "--out", out.path, "--dry-run"],
                               environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
        XCTAssertTrue(r.stdout.hasPrefix("shard 1/2: 3 of 6 inputs"), r.stdout)
        let k8s = try runProduct("attend", ["batch", photos.path, "--module", "non-local", "--out", out.path, "--dry-run"],
                                 environment: ["JOB_COMPLETION_INDEX": "0"])
        XCTAssertEqual(k8s.status, 64, k8s.stderr)                     // needs --shards
        XCTAssertTrue(k8s.stderr.contains("--shards"), k8s.stderr)
    }

    func testKilledBatchLosesNothingAndResumes() throws {
        let photos = try photoFolder(copies: 4)                      // 8 photos
        let out = dir.appendingPathComponent("out")
        let args = ["batch", photos.path, "--module", "non-local", "--out", out.path, "--grid", "40", "--quiet"]
        let p = Process()
        p.executableURL = productsDirectory().appendingPathComponent("attend")
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Kill it once the first result is on disk.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, p.isRunning,
              (try? FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".npy") }.count) ?? 0 < 1 {
            usleep(20_000)
        }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        // Every visible output is complete.
        let finished = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".npy") }
        for f in finished { XCTAssertNoThrow(try NPY.read(contentsOf: out.appendingPathComponent(f)), f) }
        // The rerun does the rest; together every photo is done once.
        let r = try runProduct("attend", args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let all = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".npy") }
        XCTAssertEqual(all.count, 8)
        XCTAssertTrue(r.stderr.contains("skipped as already done"), r.stderr)
    }
}

extension GalleryBatchTests {
    /// `attend run` with a folder (or manifest) as --input runs the batch into --output.
    func testRunAcceptsAFolderAndAManifest() throws {
        let photos = try photoFolder()
        let out = dir.appendingPathComponent("run-out")
        let r = try runProduct("attend", ["run", "--module", "cbam", "--input", photos.path, "--output", out.path, "--grid", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".npy") }.sorted(),
                       ["cat_chelsea_jpg.npy", "gray_camera_png.npy"])
        let manifest = dir.appendingPathComponent("list.txt")
        try "# one photo\n\(photos.appendingPathComponent("gray_camera.png").path)\n".write(to: manifest, atomically: true, encoding: .utf8)
        let out2 = dir.appendingPathComponent("run-out2")
        let m = try runProduct("attend", ["run", "--module", "cbam", "--input", manifest.path, "--output", out2.path, "--grid", "8"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out2.path).filter { $0.hasSuffix(".npy") }, ["gray_camera_png.npy"])
    }
}
