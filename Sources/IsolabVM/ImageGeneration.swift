import IsolabImages
import IsolabModel

extension KernelGeneration {
    /// The generation an image's kernel is judged against: its catalog generation as the
    /// kernel's config (recorded in the image) builds it.
    public static func of(_ image: GuestImage) -> KernelGeneration? {
        resolve(image.generation)?.configured(by: image.metadata.kernelConfig)
    }
}
