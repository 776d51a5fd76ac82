import ArgumentParser

/// `isolab images`: build, list and prune cached guest images.
struct ImagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Build, list and prune cached guest images."
    )
    func run() throws { throw ValidationError("not implemented yet") }
}
