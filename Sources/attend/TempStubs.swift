import ArgumentParser
import Foundation
struct MapCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "map") }
struct Image {}
enum ImageDecoder { static func decode(contentsOf: URL, maxPixels: Int) throws -> Image { Image() } }
struct ImageStem { func features(_ i: Image, grid: Int) -> TensorCore.Tensor { fatalError() } }
import TensorCore
