// RoutingAttention's top-k ranks NaN as torch.topk does (above every number), so a NaN token is
// routed and its NaN propagates (README, "Errors") instead of silently never being picked.

@testable import FastAttention
import XCTest

final class RoutingTopKNaNTests: XCTestCase {
    func testNaNRanksAboveEveryNumberAndOrderStaysTotal() {
        let v: [Float] = [0.5, .nan, 2, -1, .nan, 2, .infinity]
        // Largest first; NaNs first (by position, as ties are), then +inf, then numbers by value
        // with ties by position.
        XCTAssertEqual(RoutingAttention.topK(v, offset: 0, stride: 1, count: v.count, k: 7), [1, 4, 6, 2, 5, 0, 3])
        XCTAssertEqual(RoutingAttention.topK(v, offset: 0, stride: 1, count: v.count, k: 3), [1, 4, 6])
        // Finite inputs are ranked as before.
        XCTAssertEqual(RoutingAttention.topK([3, 1, 2], offset: 0, stride: 1, count: 3, k: 2), [0, 2])
    }
}
