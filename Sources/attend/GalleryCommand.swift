import ArgumentParser
import FastAttention
import Foundation
import ImageIO
import TensorCore

struct Gallery: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gallery",
        abstract: "Every module × every photo of a folder: a contact sheet PNG and an HTML page.",
        discussion: """
        For each photo (PNG/JPEG in DIR, sorted) and each module, the module's map is drawn over
        the photo as `attend map` would (untrained, similarity-initialised; per-query modules at
        --query-at, given as fractions of the width and height), at --cell pixels on the long
        side. Writes OUT/gallery.png (one row a module, one column a photo, labelled),
        OUT/index.html (the same grid with each module's paper, year and complexity) and the
        cells under OUT/cells/. A module that cannot run on a photo gets a grey cell saying why;
        the others go on.

        Examples:
          attend gallery SampleImages --modules all --out gallery/
          attend gallery photos/ --modules non-local,criss-cross --query-at 0.3,0.6 --cell 320 --out g/
        """
    )

    @Argument(help: "A folder of photos.") var dir: String
    @Option(help: "Comma-separated module ids, or 'all'.") var modules = "all"
    @Option(help: "Output folder.") var out: String
    @Option(help: "Query point as fractions FX,FY of the photo's width and height.") var queryAt = "0.5,0.5"
    @Option(help: "Cell size: pixels on the long side.") var cell = 256
    @Option(help: "Feature grid: cells on the photo's long side.") var grid = 32
    @Option(help: "Colour map: \(Colormap.names.joined(separator: ", ")).") var colormap = "viridis"
    @Option(help: "Seed for untrained weights and random draws.") var seed: UInt64 = 0
    @Option(help: "Largest image accepted, in pixels.") var maxPixels = 100_000_000

    func validate() throws {
        let f = queryAt.split(separator: ",").compactMap { Double($0) }
        if f.count != 2 || !f.allSatisfy({ (0...1).contains($0) }) {
            throw ValidationError("--query-at must be two fractions in 0...1, e.g. 0.5,0.5")
        }
        if !(64...2048).contains(cell) { throw ValidationError("--cell must be in 64...2048") }
        if !(4...256).contains(grid) { throw ValidationError("--grid must be in 4...256") }
    }

    func run() throws {
        let ids = modules == "all" ? Registry.ids : modules.split(separator: ",").map(String.init)
        let types = try ids.map { try Registry.type(id: $0) }
        let files = try imageFiles(in: dir)
        guard !files.isEmpty else { throw InputError.unsupported("\(dir) (no PNG or JPEG files)") }
        let renderer = MapRenderer(colormap: try Colormap(name: colormap), alpha: 0.6, categorical: true)
        let frac = queryAt.split(separator: ",").map { Double($0)! }
        try OutputFile.ensureDirectory((out as NSString).appendingPathComponent("cells"))
        let progress = Progress(total: files.count * ids.count, title: "gallery")
        var grid2D: [[Image?]] = Array(repeating: Array(repeating: nil, count: files.count), count: ids.count)
        var notes: [[String]] = Array(repeating: Array(repeating: "", count: files.count), count: ids.count)
        var failures = 0
        for (j, file) in files.enumerated() {
            let name = (file as NSString).lastPathComponent
            let photo: Image, small: Image, x: Tensor
            do {
                photo = try InputFile.image(file, maxPixels: maxPixels).toRGB()
                let s = Double(cell) / Double(max(photo.width, photo.height))
                small = try photo.resized(width: max(1, Int((Double(photo.width) * s).rounded())),
                                          height: max(1, Int((Double(photo.height) * s).rounded())))
                x = ImageStem().features(photo, grid: grid)
            } catch {
                for i in ids.indices { notes[i][j] = "\(error)"; progress.step(name) }
                failures += ids.count
                continue
            }
            let qx = min(small.width - 1, Int(Double(small.width) * frac[0])), qy = min(small.height - 1, Int(Double(small.height) * frac[1]))
            for (i, t) in types.enumerated() {
                defer { progress.step("\(t.info.id) × \(name)") }
                do {
                    let m = try Registry.make(id: t.info.id, inputShape: x.shape, seed: seed)
                    let q = gridQuery(x: qx, y: qy, photo: small, rows: x.shape[2], columns: x.shape[3])
                    let map = try m.map(onGrid: x, query: q)
                    // Several maps (hops, branches, their composition): show the primary one.
                    let all = try renderer.panels(map, photo: small)
                    guard !all.isEmpty else { continue }
                    var panel = all[min(map.primaryIndex, all.count - 1)]
                    if t.info.mapKind == .perQuery { renderer.markQuery(&panel.image, x: qx, y: qy) }
                    renderer.insetLegend(&panel.image, label: panel.label, range: panel.range,
                                         showBar: t.info.mapKind != .bases)
                    let path = cellPath(t.info.id, name)
                    try OutputFile.ensureDirectory((path as NSString).deletingLastPathComponent)
                    try panel.image.write(to: URL(fileURLWithPath: path))
                    grid2D[i][j] = panel.image
                    notes[i][j] = panel.label
                } catch {
                    notes[i][j] = "\(error)"
                    failures += 1
                }
            }
        }
        let sheet = try ContactSheet(rowLabels: ids, columnLabels: files.map { ($0 as NSString).lastPathComponent },
                                     padding: 8).render(grid2D)
        try sheet.write(to: URL(fileURLWithPath: (out as NSString).appendingPathComponent("gallery.png")))
        try writeAtomically(html(ids: ids, types: types, files: files, cells: grid2D, notes: notes),
                            to: (out as NSString).appendingPathComponent("index.html"))
        progress.finish("\(ids.count) modules × \(files.count) photos → \(out)/gallery.png, \(out)/index.html" +
                        (failures > 0 ? "; \(failures) cell(s) could not be drawn (see index.html)" : ""))
    }

    /// cells/ID/NAME_EXT.png: the extension stays in the name, so photo.jpg and photo.png differ.
    static func cellName(_ image: String) -> String {
        image.replacingOccurrences(of: ".", with: "_") + ".png"
    }

    func cellPath(_ id: String, _ image: String) -> String {
        ((out as NSString).appendingPathComponent("cells/\(id)") as NSString).appendingPathComponent(Self.cellName(image))
    }

    func html(ids: [String], types: [any AttentionModule.Type], files: [String], cells: [[Image?]], notes: [[String]]) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let names = files.map { ($0 as NSString).lastPathComponent }
        var h = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>FastAttention gallery</title>
        <style>
        body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
        table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
        th.m{max-width:16em}img{display:block;max-width:\(cell)px}.note{font-size:.8em;color:#555;max-width:\(cell)px}
        .err{background:#eee;color:#a00;font-size:.8em;max-width:\(cell)px;padding:4px}code{font-size:.85em}
        </style></head><body>
        <h1>FastAttention gallery</h1>
        <p>Untrained modules with seeded weights and a similarity initialisation (query and key projections equal):
        each map shows which pixels resemble the query point (red dot, at \(esc(queryAt)) of each photo) under the module's own
        attention pattern. Features come from the documented image stem on a \(grid)-cell grid.</p>
        <p id="status">images: not yet checked</p>
        <table><tr><th>module</th>
        """
        for n in names { h += "<th>\(esc(n))</th>" }
        h += "</tr>\n"
        for (i, t) in types.enumerated() {
            let info = t.info
            h += "<tr><th class=\"m\"><b>\(esc(info.id))</b><br>\(esc(info.title)) (\(info.year))<br>"
            h += "<code>\(esc(info.complexity))</code><br><span class=\"note\">\(esc(info.mapKind.rawValue)) map</span></th>"
            for (j, n) in names.enumerated() {
                if cells[i][j] != nil {
                    let src = "cells/\(ids[i])/\(Self.cellName(n))"
                    h += "<td><img src=\"\(esc(src))\" alt=\"\(esc(ids[i])) on \(esc(n))\"><div class=\"note\">\(esc(notes[i][j]))</div></td>"
                } else {
                    h += "<td><div class=\"err\">not drawn: \(esc(notes[i][j]))</div></td>"
                }
            }
            h += "</tr>\n"
        }
        h += """
        </table>
        <script>
        window.addEventListener('load', function () {
          var imgs = Array.from(document.images);
          var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
          document.getElementById('status').textContent = 'images: ' + (imgs.length - broken) + ' loaded, ' + broken + ' broken';
        });
        </script>
        </body></html>

        """
        return h
    }
}
