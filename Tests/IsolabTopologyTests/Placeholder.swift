import XCTest

final class IsolabTopologyTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
