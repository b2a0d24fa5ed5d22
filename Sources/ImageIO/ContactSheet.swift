// ContactSheet: a labelled grid of images on a white background (the `attend gallery` page).

/// Composes images into a grid with optional row labels (left) and column labels (top).
///
/// Every cell has the same size, the largest image's unless `cellWidth`/`cellHeight` are
/// set, in which case images are shrunk (never enlarged) to fit, keeping their aspect ratio.
/// Images are centred in their cells; a nil entry leaves its cell blank, so a module that
/// failed on one photo does not shift the rest of the row.
public struct ContactSheet {
    public var rowLabels: [String]
    public var columnLabels: [String]
    public var padding: Int
    public var labelScale: Int
    public var cellWidth: Int?
    public var cellHeight: Int?
    public var background: Color
    public var labelColor: Color

    public init(rowLabels: [String] = [], columnLabels: [String] = [], padding: Int = 8,
                labelScale: Int = 1, cellWidth: Int? = nil, cellHeight: Int? = nil,
                background: Color = .white, labelColor: Color = .black) {
        self.rowLabels = rowLabels
        self.columnLabels = columnLabels
        self.padding = max(padding, 0)
        self.labelScale = max(labelScale, 1)
        self.cellWidth = cellWidth
        self.cellHeight = cellHeight
        self.background = background
        self.labelColor = labelColor
    }

    /// The sheet for `rows` (row-major; rows may differ in length). Throws if the grid is
    /// empty or a requested cell size is not positive.
    public func render(_ rows: [[Image?]]) throws -> Image {
        let columns = max(rows.map(\.count).max() ?? 0, columnLabels.count)
        guard !rows.isEmpty || !rowLabels.isEmpty, columns > 0 else {
            throw ImageError.invalidImage("a contact sheet needs at least one cell")
        }
        if let w = cellWidth, w <= 0 { throw ImageError.invalidImage("cell width \(w) must be positive") }
        if let h = cellHeight, h <= 0 { throw ImageError.invalidImage("cell height \(h) must be positive") }
        let images = rows.flatMap { $0 }.compactMap { $0 }
        let cw = cellWidth ?? max(images.map(\.width).max() ?? 1, 1)
        let ch = cellHeight ?? max(images.map(\.height).max() ?? 1, 1)
        let rowCount = max(rows.count, rowLabels.count)

        let lineHeight = BitmapFont.glyphHeight * labelScale
        let labelColumn = rowLabels.isEmpty ? 0
            : rowLabels.map { Image.textWidth($0, scale: labelScale) }.max()! + padding
        let labelRow = columnLabels.isEmpty ? 0 : lineHeight + padding
        let width = padding + labelColumn + columns * (cw + padding)
        let height = padding + labelRow + rowCount * (ch + padding)
        var sheet = Image(width: width, height: height, channels: 3, fill: background)

        for (c, label) in columnLabels.enumerated() {
            let x = padding + labelColumn + c * (cw + padding)
            let tw = Image.textWidth(label, scale: labelScale)
            sheet.drawText(label, x: x + max((cw - tw) / 2, 0), y: padding, color: labelColor, scale: labelScale)
        }
        for (r, label) in rowLabels.enumerated() {
            let y = padding + labelRow + r * (ch + padding) + (ch - lineHeight) / 2
            sheet.drawText(label, x: padding, y: y, color: labelColor, scale: labelScale)
        }
        for (r, row) in rows.enumerated() {
            for (c, cell) in row.enumerated() {
                guard let cell, cell.width > 0, cell.height > 0 else { continue }
                let fitted = try fit(cell, cw, ch)
                let x = padding + labelColumn + c * (cw + padding) + (cw - fitted.width) / 2
                let y = padding + labelRow + r * (ch + padding) + (ch - fitted.height) / 2
                sheet.blit(fitted, x: x, y: y)
            }
        }
        return sheet
    }

    /// Shrinks `image` to fit w×h keeping its aspect ratio; never enlarges.
    private func fit(_ image: Image, _ w: Int, _ h: Int) throws -> Image {
        if image.width <= w && image.height <= h { return image }
        let s = min(Double(w) / Double(image.width), Double(h) / Double(image.height))
        return try image.resized(width: max(Int((Double(image.width) * s).rounded()), 1),
                                 height: max(Int((Double(image.height) * s).rounded()), 1))
    }
}
