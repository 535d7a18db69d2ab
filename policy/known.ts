/**
 * Reads a value that may be unknown during `pulumi preview` (the policy SDK
 * throws its UnknownValueError when one is touched): undefined then, so a
 * policy checks everything that is known instead of giving up on the stack.
 */
export function known<T>(read: () => T): T | undefined {
    try {
        return read();
    } catch (error) {
        if (error instanceof Error && error.constructor.name === "UnknownValueError") return undefined;
        throw error;
    }
}
