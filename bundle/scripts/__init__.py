"""Python package of the CXR fracture AALS bundle (imported in configs as ``scripts.<module>``)."""
